#!/usr/bin/env python3
"""A chinwag chat client in one file: OAuth 2.0 sign-in, then XMPP with the token.

1. Runs the authorization-code flow with PKCE (S256) as a public app: it listens
   on a loopback redirect URI (http://127.0.0.1:PORT/callback), opens the
   authorization page in your browser (or prints it, with --no-browser), and
   exchanges the code that comes back for an access token.
2. Signs in over XMPP with SASL X-MESSENGER-OAUTH2 and that token (slixmpp),
   prints your contacts, their presence and every message that arrives, and
   sends one message.

Register the app once (the redirect URI must match --redirect-port):

    chinwag app register "Chat example" --public --redirect-uri http://127.0.0.1:8765/callback

then run:

    python examples/python/chat.py --client-id CLIENT_ID --to bob@localhost --message "Hello!"

It needs slixmpp and httpx (requirements.txt). Stop it with Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import secrets
import signal
import ssl
import sys
import webbrowser
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import slixmpp

SCOPE = "wl.messenger"
CALLBACK_PATH = "/callback"
DONE_PAGE = (
    "<!doctype html><meta charset='utf-8'><title>Signed in</title>"
    "<p>{text} You can close this window and go back to the terminal.</p>"
)


def say(*parts: object) -> None:
    print(*parts, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument(
        "--server",
        default="http://127.0.0.1:5280",
        help="chinwag's web address, for OAuth (default: %(default)s)",
    )
    parser.add_argument(
        "--xmpp-host", default="127.0.0.1", help="XMPP host to connect to (default: %(default)s)"
    )
    parser.add_argument(
        "--xmpp-port", type=int, default=5222, help="XMPP STARTTLS port (default: %(default)s)"
    )
    parser.add_argument(
        "--domain", default="localhost", help="the XMPP domain (default: %(default)s)"
    )
    parser.add_argument("--client-id", required=True, help="what `chinwag app register` printed")
    parser.add_argument(
        "--redirect-port",
        type=int,
        default=8765,
        help="port of the loopback redirect URI http://127.0.0.1:PORT/callback, as registered "
        "(default: %(default)s)",
    )
    parser.add_argument("--to", required=True, help="the JID to chat with, e.g. bob@localhost")
    parser.add_argument("--message", default="Hello from the chinwag example!", help="what to send")
    parser.add_argument(
        "--no-browser", action="store_true", help="print the authorization URL, do not open it"
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="accept the server's TLS certificate unchecked (chinwag's generated one is self-signed)",
    )
    parser.add_argument(
        "--until-reply", action="store_true", help="exit once the peer has answered"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds to wait for you to sign in (default: %(default)s)",
    )
    return parser.parse_args(argv)


# --- OAuth: authorization code with PKCE, loopback redirect ---------------------------


def pkce_pair() -> tuple[str, str]:
    """A PKCE verifier and its S256 challenge (RFC 7636)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class RedirectListener:
    """A one-shot HTTP server on 127.0.0.1 that catches the authorization response."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.params: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()
        self._server: asyncio.Server | None = None

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}{CALLBACK_PATH}"

    async def __aenter__(self) -> RedirectListener:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), 10)
            while (await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b"\n", b""):
                pass  # the headers: nothing in them matters here
            _method, target, _version = request_line.decode("latin-1").split(" ", 2)
            url = urlsplit(target)
            if url.path != CALLBACK_PATH:
                status, text = "404 Not Found", "This is not the redirect URI."
            else:
                params = {key: values[0] for key, values in parse_qs(url.query).items()}
                if not self.params.done():
                    self.params.set_result(params)
                status = "200 OK"
                text = "Signed in." if "code" in params else "Not signed in."
            body = DONE_PAGE.format(text=text).encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, ValueError, ConnectionError):
            pass
        finally:
            writer.close()


async def authorize(args: argparse.Namespace) -> str:
    """The access token, once the user signed in and allowed the app in the browser."""
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(16)
    async with RedirectListener(args.redirect_port) as listener:
        query = urlencode(
            {
                "response_type": "code",
                "client_id": args.client_id,
                "redirect_uri": listener.redirect_uri,
                "scope": SCOPE,
                "state": state,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        url = f"{args.server.rstrip('/')}/oauth/authorize?{query}"
        say("Open this page to sign in:", url)
        if not args.no_browser:
            webbrowser.open(url)
        try:
            params = await asyncio.wait_for(listener.params, args.timeout)
        except TimeoutError:
            raise SystemExit(f"nobody signed in within {args.timeout:.0f}s") from None
    if params.get("state") != state:
        raise SystemExit("the redirect did not answer our request (state mismatch)")
    if "error" in params:
        raise SystemExit(f"not authorized: {params['error']}")
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(
            f"{args.server.rstrip('/')}/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": params["code"],
                "redirect_uri": listener.redirect_uri,
                "client_id": args.client_id,
                "code_verifier": verifier,
            },
        )
    if response.status_code != 200:
        raise SystemExit(f"the token endpoint said {response.status_code}: {response.text}")
    return str(response.json()["access_token"])


# --- XMPP with the token ----------------------------------------------------------------


class Chat(slixmpp.ClientXMPP):
    def __init__(self, args: argparse.Namespace, access_token: str) -> None:
        # Only the domain matters: the token decides who signs in.
        super().__init__(args.domain, "", sasl_mech="X-MESSENGER-OAUTH2")
        self.credentials["access_token"] = access_token
        self.enable_direct_tls = False  # the port speaks STARTTLS
        self.enable_plaintext = False
        if args.insecure:
            self.ssl_context.check_hostname = False
            self.ssl_context.verify_mode = ssl.CERT_NONE
        self.peer = slixmpp.JID(args.to)
        self.text = args.message
        self.until_reply = args.until_reply
        self.finished: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.add_event_handler("session_start", self.on_session_start)
        self.add_event_handler("failed_auth", self.on_failed_auth)
        self.add_event_handler("disconnected", lambda _: self.finish("disconnected"))
        self.add_event_handler("connection_failed", self.on_connection_failed)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("presence_available", self.on_presence)
        self.add_event_handler("presence_unavailable", self.on_presence)

    def finish(self, why: str) -> None:
        if not self.finished.done():
            self.finished.set_result(why)

    async def on_session_start(self, _event: Any) -> None:
        say("Signed in as", self.boundjid.full)
        await self.get_roster()
        for jid in self.client_roster:
            item = self.client_roster[jid]
            say(
                f"contact: {jid} ({item['name'] or 'no name'}, subscription {item['subscription']})"
            )
        self.send_presence()
        self.send_message(mto=self.peer, mbody=self.text, mtype="chat")
        say(f"sent to {self.peer}: {self.text}")

    def on_failed_auth(self, failure: Any) -> None:
        say("the server refused the token:", failure["condition"])
        self.finish("refused")

    def on_connection_failed(self, error: Any) -> None:
        say("cannot connect:", error)
        self.finish("refused")

    def on_presence(self, presence: Any) -> None:
        sender = presence["from"]
        if sender.bare == self.boundjid.bare and sender.resource == self.boundjid.resource:
            return  # our own presence, reflected
        if presence["type"] == "unavailable":
            say(f"presence: {sender} is offline")
            return
        show = presence["show"] or "available"
        status = f" ({presence['status']})" if presence["status"] else ""
        say(f"presence: {sender} is {show}{status}")

    def on_message(self, message: Any) -> None:
        if message["type"] not in ("chat", "normal") or not message["body"]:
            return
        say(f"message from {message['from']}: {message['body']}")
        if self.until_reply and message["from"].bare == self.peer.bare:
            self.finish("replied")


async def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    token = await authorize(args)
    say("Got an access token; signing in over XMPP")
    chat = Chat(args, token)
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):  # not on Windows
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, chat.finish, "stopped")
    chat.connect(args.xmpp_host, args.xmpp_port)
    why = await chat.finished
    if chat.is_connected():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(chat.disconnect(), 5)
    say("Bye")
    return 1 if why == "refused" else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
