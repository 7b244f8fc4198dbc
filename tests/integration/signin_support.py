"""Helpers for signing in over XMPP with OAuth tokens and app passwords.

- :class:`OAuthBearer` teaches slixmpp SASL ``OAUTHBEARER`` (RFC 7628), which it
  does not ship; ``X-MESSENGER-OAUTH2`` and ``X-OAUTH2`` are slixmpp's own.
- :func:`token_from_flow` gets a token as an app does: the authorization-code
  flow with PKCE against the server's HTTP listener, signing in and consenting
  through the forms.
- :class:`RawSasl` runs one SASL exchange byte by byte, for what slixmpp does
  not send (a base64-wrapped X-MESSENGER-OAUTH2 token, the OAUTHBEARER error
  challenge seen on the wire).
- :func:`session_end` waits for the stream error that ends a live session;
  :func:`chats` shows one that goes on, exchanging messages.
- :func:`run_chinwag` runs the console script in another process, without
  blocking the event loop the in-process server runs on.

Every wait is bounded by ``TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import base64
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from oauth.support import authorize_path, exchange, form_to, forms, pkce, redirect_params, submit
from slixmpp import ClientXMPP
from slixmpp.util.sasl.client import Mech, sasl_mech

from chinwag.server.events import POLL_SECONDS

from .support import (
    NS_SASL,
    TIMEOUT,
    NewClient,
    RawStream,
    ServerHandle,
    SignInFailed,
    sign_in,
    stream_header,
)
from .test_serve import chinwag_command, clean_env, write_config

NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
MESSENGER = "wl.messenger"
REVOKED = "access was revoked"
"""What the text of the stream error that ends a revoked session says."""
END_WITHIN = 1.0
"""How soon a revocation or suspension in this process ends the sessions it concerns."""
END_WITHIN_ELSEWHERE = END_WITHIN + POLL_SECONDS
"""The same for a change made by another process, which the event pump polls for."""


@sasl_mech(10)
class OAuthBearer(Mech):
    """RFC 7628 OAUTHBEARER: ``n,,^Aauth=Bearer <token>^A^A``; ``^A`` answers an error."""

    name = "OAUTHBEARER"
    required_credentials = {"access_token"}
    optional_credentials = {"authzid"}

    def process(self, challenge: bytes = b"") -> bytes:
        if challenge:  # the JSON error challenge (RFC 7628 3.2.2): end the exchange
            return b"\x01"
        authzid = self.credentials["authzid"]
        gs2 = b"n,a=" + authzid + b"," if authzid else b"n,,"
        return gs2 + b"\x01auth=Bearer " + self.credentials["access_token"] + b"\x01\x01"


# --- slixmpp clients with tokens and app passwords -----------------------------------


def token_client(
    new_client: NewClient,
    server: ServerHandle,
    token: str,
    mechanism: str,
    *,
    user: str = "someone-else",
    resource: str | None = "phone",
    authzid: str | None = None,
) -> ClientXMPP:
    """An unconnected client that signs in with ``token`` and nothing else.

    The JID it assumes is ``user@domain/resource``: only X-OAUTH2 sends the
    username; the other token mechanisms sign in as the token's user whatever it is.
    """
    client = new_client(server, user, resource, password="", sasl_mech=mechanism)
    client.credentials["access_token"] = token
    if authzid is not None:
        client.credentials["authzid"] = authzid
    return client


async def refusal(client: ClientXMPP, server: ServerHandle) -> str:
    """Connect ``client``, expecting its sign-in to fail; returns the SASL failure condition."""
    failed = asyncio.get_running_loop().create_future()

    def on_failure(stanza: Any) -> None:
        if not failed.done():
            failed.set_result(stanza["condition"])

    client.add_event_handler("failed_auth", on_failure)
    try:
        await sign_in(client, server.host, server.port)
    except SignInFailed:
        pass
    else:
        raise AssertionError(f"{client.boundjid} signed in")
    return await asyncio.wait_for(failed, TIMEOUT)


@dataclass(frozen=True)
class SessionEnd:
    at: float
    """The event loop's time when the stream error arrived."""
    condition: str
    text: str


def session_end(client: ClientXMPP) -> asyncio.Future[SessionEnd]:
    """A future for the stream error that ends ``client``'s session; set it up first."""
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[SessionEnd] = loop.create_future()

    def on_error(error: Any) -> None:
        if not ended.done():
            ended.set_result(SessionEnd(loop.time(), error["condition"], error["text"]))

    client.add_event_handler("stream_error", on_error)
    return ended


async def ends_within(
    ended: asyncio.Future[SessionEnd], since: float, seconds: float
) -> SessionEnd:
    """The end of a session, checked to say access was revoked, ``seconds`` after ``since``."""
    end = await asyncio.wait_for(ended, TIMEOUT)
    assert end.condition == "not-authorized", end
    assert REVOKED in end.text, end
    assert end.at - since <= seconds, f"the session ended {end.at - since:.2f}s later"
    return end


async def still_served(client: ClientXMPP, server: ServerHandle) -> None:
    """``client``'s session is alive: the server answers its ping."""
    await client.plugin["xep_0199"].send_ping(server.domain, timeout=TIMEOUT)


async def delivered(sender: ClientXMPP, receiver: ClientXMPP, body: str) -> None:
    """``sender`` sends ``body`` to ``receiver``'s resource, and it arrives."""
    arrived = asyncio.get_running_loop().create_future()

    def on_message(message: Any) -> None:
        if message["body"] == body and not arrived.done():
            arrived.set_result(None)

    receiver.add_event_handler("message", on_message)
    try:
        sender.send_message(mto=receiver.boundjid, mbody=body, mtype="chat")
        await asyncio.wait_for(arrived, TIMEOUT)
    finally:
        receiver.del_event_handler("message", on_message)


async def chats(client: ClientXMPP, peer: ClientXMPP) -> None:
    """``client``'s session is alive and useful: it and ``peer`` exchange messages."""
    await delivered(client, peer, f"hello from {client.boundjid.resource}")
    await delivered(peer, client, f"hello to {client.boundjid.resource}")


def session_app(server: ServerHandle, client: ClientXMPP) -> str | None:
    """The app the server counts ``client``'s session as."""
    assert server.app is not None
    [session] = [
        session
        for session in server.app.xmpp.router.all_sessions()
        if str(session.jid) == str(client.boundjid)
    ]
    return session.app


# --- the authorization-code flow and the connected-apps page, over HTTP ---------------


def web_base(server: ServerHandle) -> str:
    assert server.app is not None
    return f"http://{server.host}:{server.app.http.port}"


def browser(server: ServerHandle) -> httpx.AsyncClient:
    """A cookie-keeping HTTP client on the server's web listener, following no redirect."""
    return httpx.AsyncClient(base_url=web_base(server), follow_redirects=False, timeout=TIMEOUT)


@dataclass(frozen=True)
class CodeFlow:
    code: str
    """The authorization code the app was given (used up by now)."""
    tokens: dict[str, Any]
    """The token response it got for the code."""


async def token_from_flow(
    server: ServerHandle, client_id: str, user: str, scope: str = MESSENGER
) -> dict[str, Any]:
    """The token response an app gets after ``user`` signs in and allows it (PKCE, S256)."""
    return (await code_flow(server, client_id, user, scope)).tokens


async def code_flow(
    server: ServerHandle,
    client_id: str,
    user: str,
    scope: str = MESSENGER,
    *,
    secret: str | None = None,
) -> CodeFlow:
    """``user`` signs in and allows the app, which exchanges the code (PKCE, S256; a
    confidential app authenticates with ``secret``)."""
    challenge = pkce()
    async with browser(server) as web:
        page = await web.get(
            authorize_path(
                client_id,
                scope=scope,
                state="st",
                code_challenge=challenge.challenge,
                code_challenge_method="S256",
            )
        )
        signed_in = await submit(
            web, form_to(page, "/account/signin"), username=user, password=server.users[user]
        )
        assert signed_in.status_code == 303, signed_in.text
        consent = await web.get(signed_in.headers["location"])
        redirect = await submit(web, form_to(consent, "/oauth/authorize"), decision="approve")
        returned = redirect_params(redirect)
        assert returned["state"] == "st"
        response = await exchange(
            web, client_id, returned["code"], challenge.verifier, secret=secret
        )
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    assert set(tokens["scope"].split()) == set(scope.split())
    return CodeFlow(returned["code"], tokens)


async def sign_in_on_the_web(web: httpx.AsyncClient, user: str, password: str) -> None:
    page = await web.get("/account/signin")
    signed_in = await submit(
        web, form_to(page, "/account/signin"), username=user, password=password
    )
    assert signed_in.status_code == 303, signed_in.text


async def revoke_on_the_apps_page(web: httpx.AsyncClient, client_id: str) -> None:
    """Press the Revoke button of the app on the signed-in user's connected-apps page."""
    page = await web.get("/account/apps")
    assert page.status_code == 200, page.text
    [form] = [
        form
        for form in forms(page.text)
        if form.action == "/account/apps/revoke" and form.fields.get("client_id") == client_id
    ]
    assert form.fields["csrf_token"]
    revoked = await submit(web, form)
    assert revoked.status_code == 303, revoked.text


# --- raw SASL -----------------------------------------------------------------------

_SASL_ANSWER = re.compile(rb"<(success|failure|challenge)\b[^>]*?(?:/>|>.*?</\1>)", re.DOTALL)
_BIND_RESULT = re.compile(rb"<iq\b.*?</iq>", re.DOTALL)


class RawSasl:
    """A client stream past STARTTLS, ready for one ``<auth/>`` of the test's making."""

    def __init__(self, raw: RawStream) -> None:
        self.raw = raw

    @classmethod
    async def open(cls, server: ServerHandle, *, source: str | None = None) -> RawSasl:
        raw = await RawStream.open(server.host, server.port, source=source)
        await raw.send(stream_header(server.domain))
        await raw.read_until(b"</stream:features>")
        await raw.start_tls()
        await raw.send(stream_header(server.domain))
        features = await raw.read_until(b"</stream:features>")
        assert b"</stream:features>" in features, features
        raw.received = b""
        return cls(raw)

    async def _answer(self) -> ET.Element:
        """The next success, failure or challenge of the server, parsed."""

        async def wait() -> bytes:
            while (found := _SASL_ANSWER.search(self.raw.received)) is None:
                chunk = await self.raw.reader.read(65536)
                if not chunk:
                    raise AssertionError(f"the server closed the stream: {self.raw.received!r}")
                self.raw.received += chunk
            self.raw.received = self.raw.received[found.end() :]
            return found.group(0)

        answer = ET.fromstring(await asyncio.wait_for(wait(), TIMEOUT))
        assert answer.tag.startswith(f"{{{NS_SASL}}}"), answer.tag
        return answer

    async def auth(self, mechanism: str, text: str) -> ET.Element:
        """Send ``<auth/>`` with ``text`` as it is (no encoding added); the answer."""
        await self.raw.send(
            f"<auth xmlns='{NS_SASL}' mechanism='{mechanism}'>{text}</auth>".encode()
        )
        return await self._answer()

    async def respond(self, data: bytes) -> ET.Element:
        encoded = base64.b64encode(data).decode() or "="
        await self.raw.send(f"<response xmlns='{NS_SASL}'>{encoded}</response>".encode())
        return await self._answer()

    async def abort_exchange(self) -> ET.Element:
        """Send ``<abort/>``; the answer."""
        await self.raw.send(f"<abort xmlns='{NS_SASL}'/>".encode())
        return await self._answer()

    async def restart(self) -> bytes:
        """After success: the new stream's features."""
        await self.raw.send(stream_header())
        features = await self.raw.read_until(b"</stream:features>")
        assert b"</stream:features>" in features, features
        self.raw.received = b""
        return features

    async def bind(self, resource: str = "raw") -> str:
        """Bind ``resource`` on the restarted stream; the full JID the server gives."""
        await self.raw.send(
            f"<iq type='set' id='b1'><bind xmlns='{NS_BIND}'><resource>{resource}"
            "</resource></bind></iq>".encode()
        )

        async def wait() -> bytes:
            while (found := _BIND_RESULT.search(self.raw.received)) is None:
                chunk = await self.raw.reader.read(65536)
                if not chunk:
                    raise AssertionError(f"the server closed the stream: {self.raw.received!r}")
                self.raw.received += chunk
            self.raw.received = self.raw.received[found.end() :]
            return found.group(0)

        iq = ET.fromstring(
            (await asyncio.wait_for(wait(), TIMEOUT)).replace(
                b"<iq ", b"<iq xmlns='jabber:client' ", 1
            )
        )
        assert iq.get("type") == "result", ET.tostring(iq)
        jid = iq.find(f"{{{NS_BIND}}}bind/{{{NS_BIND}}}jid")
        assert jid is not None and jid.text, ET.tostring(iq)
        return jid.text

    async def close(self) -> None:
        self.raw.abort()


def condition(answer: ET.Element) -> str:
    """The tag of a SASL answer, or the condition of a failure."""
    tag = answer.tag.partition("}")[2]
    if tag != "failure":
        return tag
    [found] = [child for child in answer if not child.tag.endswith("}text")]
    return found.tag.partition("}")[2]


# --- the console script, in another process ------------------------------------------


def cli_config(directory: Path, server: ServerHandle) -> Path:
    """A settings file for ``chinwag`` commands on the running server's store."""
    assert server.app is not None
    settings = server.app.settings
    return write_config(
        directory / "chinwag-cli.toml",
        {
            "domain": settings.domain,
            "data_dir": settings.data_dir,
            "http": {"host": settings.http.host, "port": server.app.http.port},
        },
    )


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: str
    stderr: str
    at: float
    """The event loop's time when the process had exited."""


async def run_chinwag(config: Path, *args: str, timeout: float = 60.0) -> Finished:
    """``chinwag ARGS --config CONFIG`` in a subprocess; the server keeps running meanwhile."""
    process = await asyncio.create_subprocess_exec(
        *chinwag_command(),
        *args,
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(),
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"chinwag {' '.join(args)} ran for more than {timeout}s") from None
    return Finished(
        process.returncode or 0,
        stdout.decode(),
        stderr.decode(),
        asyncio.get_running_loop().time(),
    )
