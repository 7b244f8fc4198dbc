"""Helpers to drive the OAuth pages like a browser: forms, PKCE, redirects."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import typer

from chinwag.oauth_cli import app_cli, app_password_cli, token_cli

ALICE, ALICE_PASSWORD = "alice", "wonderland"
CALLBACK = "http://127.0.0.1:8765/callback"
OTHER_CALLBACK = "https://app.example/oauth/callback"

shared_loop = pytest.mark.asyncio(loop_scope="session")
"""For the tests that use the session-wide listener (see conftest)."""

# The OAuth commands, mounted as chinwag.cli mounts them.
commands = typer.Typer()
commands.add_typer(app_cli, name="app")
commands.add_typer(token_cli, name="token")
commands.add_typer(app_password_cli, name="app-password")


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    buttons: list[tuple[str, str]] = field(default_factory=list)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = {key: value or "" for key, value in attrs}
        if tag == "form":
            self.forms.append(Form(named.get("action", ""), named.get("method", "get")))
        elif tag == "input" and self.forms and "name" in named:
            if named.get("type") != "checkbox" or "checked" in named:
                self.forms[-1].fields[named["name"]] = named.get("value", "")
        elif tag == "button" and self.forms and "name" in named:
            self.forms[-1].buttons.append((named["name"], named.get("value", "")))
        elif tag == "select" and self.forms:
            self._select = named.get("name")
        elif tag == "option" and self.forms and self._select is not None:
            self.forms[-1].fields.setdefault(self._select, named.get("value", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None


def forms(html: str) -> list[Form]:
    parser = _FormParser()
    parser.feed(html)
    return parser.forms


def form_to(response: httpx.Response, action_prefix: str) -> Form:
    [found] = [form for form in forms(response.text) if form.action.startswith(action_prefix)]
    return found


async def submit(client: httpx.AsyncClient, form: Form, **values: str) -> httpx.Response:
    return await client.post(form.action, data={**form.fields, **values})


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str


def pkce() -> Pkce:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return Pkce(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode())


def authorize_path(client_id: str, **params: str) -> str:
    query = {"client_id": client_id, "response_type": "code", "redirect_uri": CALLBACK, **params}
    return "/oauth/authorize?" + urlencode(query)


def redirect_params(response: httpx.Response, part: str = "query") -> dict[str, str]:
    """The parameters the authorization server sent back in a redirect's query or fragment."""
    assert response.status_code == 302, response.text
    location = urlsplit(response.headers["location"])
    return {key: values[0] for key, values in parse_qs(getattr(location, part)).items()}


async def sign_in_and_consent(
    client: httpx.AsyncClient,
    path: str,
    *,
    decision: str = "approve",
    remember: bool = True,
) -> httpx.Response:
    """Open ``path``, sign in as alice if asked, answer the consent page if shown;
    the response is the authorization server's final redirect."""
    page = await client.get(path)
    if "/account/signin" in page.text:
        signed_in = await submit(
            client, form_to(page, "/account/signin"), username=ALICE, password=ALICE_PASSWORD
        )
        assert signed_in.status_code == 303, signed_in.text
        page = await client.get(signed_in.headers["location"])
    if page.status_code != 200:
        return page
    consent = form_to(page, "/oauth/authorize")
    if remember:  # tick "Don't ask me again", which is not ticked by default
        consent.fields["remember"] = "yes"
    return await submit(client, consent, decision=decision)


async def code_for(
    client: httpx.AsyncClient, client_id: str, scope: str, challenge: Pkce | None, **extra: str
) -> str:
    params = {"scope": scope, "state": "s1", **extra}
    if challenge is not None:
        params |= {"code_challenge": challenge.challenge, "code_challenge_method": "S256"}
    redirect = await sign_in_and_consent(client, authorize_path(client_id, **params))
    returned = redirect_params(redirect)
    assert returned["state"] == "s1"
    return returned["code"]


async def exchange(
    client: httpx.AsyncClient,
    client_id: str,
    code: str,
    verifier: str | None,
    *,
    secret: str | None = None,
    redirect_uri: str = CALLBACK,
) -> httpx.Response:
    """POST the authorization_code grant; a confidential app authenticates with HTTP Basic."""
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    if verifier is not None:
        data["code_verifier"] = verifier
    if secret is None:
        return await client.post("/oauth/token", data={**data, "client_id": client_id})
    return await client.post("/oauth/token", data=data, auth=(client_id, secret))


async def refresh(client: httpx.AsyncClient, client_id: str, refresh_token: str) -> httpx.Response:
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id}
    return await client.post("/oauth/token", data=data)
