"""SASL under attack: wrong SCRAM proofs and malformed exchanges count against the
client's address like wrong PLAIN passwords; an oversized name is refused before it is
normalised; and a SCRAM challenge for an unknown name looks like a real account's, the
same after a restart."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest

from chinwag.network.accounts import normalize_username

from .conftest import NewClient, StartServer
from .signin_support import RawSasl, condition, refusal, session_end
from .support import DOMAIN, HOST, NS_SASL, TIMEOUT, ServerHandle, SignInFailed, free_port, sign_in
from .test_serve import ServeProcess, write_config

pytestmark = pytest.mark.security

SCRAM = ["SCRAM-SHA-256", "SCRAM-SHA-1"]
LONG_NAME = "İ" * 5000
"""10 KB of UTF-8: longer than any SASL message taken, yet short enough to reach SASL
(its normalisation took ~35 ms of CPU; the issue's 90,000 characters, ~0.6 s)."""


def limited(failures: int = 2) -> dict[str, object]:
    return {"limits": {"max_auth_failures_per_address": failures}}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def refused_at_sign_in(new_client: NewClient, server: ServerHandle, mechanism: str) -> str:
    """Sign in as alice with the right password, expecting the stream error that refuses
    the address; its condition."""
    client = new_client(server, "alice", sasl_mech=mechanism)
    ended = session_end(client)
    with pytest.raises(SignInFailed):
        await sign_in(client, server.host, server.port)
    return (await asyncio.wait_for(ended, TIMEOUT)).condition


async def sasl_answer(server: ServerHandle, mechanism: str, text: str) -> str:
    """One ``<auth/>`` on a fresh stream; the answer's condition (or "success")."""
    stream = await RawSasl.open(server)
    try:
        return condition(await stream.auth(mechanism, text))
    finally:
        await stream.close()


@pytest.mark.parametrize("mechanism", SCRAM)
async def test_wrong_scram_proofs_count_against_the_address(
    start_server: StartServer, new_client: NewClient, mechanism: str
) -> None:
    server = await start_server(**limited(failures=2))
    for attempt in range(2):
        guesser = new_client(server, "alice", password=f"guess-{attempt}", sasl_mech=mechanism)
        assert await refusal(guesser, server) == "not-authorized"

    assert await refused_at_sign_in(new_client, server, mechanism) == "policy-violation"


MALFORMED = {
    "long SCRAM username": ("SCRAM-SHA-256", b64(f"n,,n={LONG_NAME},r=abcdef".encode())),
    "SCRAM username over 1023 bytes": ("SCRAM-SHA-1", b64(b"n,,n=" + b"a" * 1024 + b",r=abc")),
    "long PLAIN authcid": ("PLAIN", b64(f"\0{LONG_NAME}\0secret".encode())),
    "PLAIN authzid over 1023 bytes": ("PLAIN", b64(b"a" * 1024 + b"\0alice\0secret")),
    "not base64": ("PLAIN", "not base64!"),
    "long token": ("X-MESSENGER-OAUTH2", "t" * 10000),
    "OAUTHBEARER authzid over 1023 bytes": (
        "OAUTHBEARER",
        b64(b"n,a=" + b"a" * 1024 + b",\x01auth=Bearer token\x01\x01"),
    ),
}


@pytest.mark.parametrize(("mechanism", "text"), MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_requests_are_refused_and_count_against_the_address(
    start_server: StartServer, new_client: NewClient, mechanism: str, text: str
) -> None:
    server = await start_server(**limited(failures=2))
    for _ in range(2):
        assert await sasl_answer(server, mechanism, text) in (
            "malformed-request",
            "incorrect-encoding",
        )

    assert await refused_at_sign_in(new_client, server, "PLAIN") == "policy-violation"


async def test_a_refused_address_is_shut_out_even_by_a_request_the_stream_refuses(
    start_server: StartServer,
) -> None:
    server = await start_server(**limited(failures=2))
    for _ in range(2):
        assert await sasl_answer(server, "PLAIN", "not base64!") == "incorrect-encoding"

    stream = await RawSasl.open(server)
    try:
        await stream.raw.send(
            f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>not base64!</auth>".encode()
        )
        ended = await stream.raw.read_until_closed()
    finally:
        await stream.close()
    assert b"<policy-violation" in ended, ended


async def test_a_long_scram_username_is_never_normalised(server: ServerHandle) -> None:
    before = normalize_username.cache_info().misses
    text = b64(f"n,,n={LONG_NAME},r=abcdef".encode())

    assert await sasl_answer(server, "SCRAM-SHA-256", text) == "malformed-request"
    assert normalize_username.cache_info().misses == before


async def test_aborted_exchanges_do_not_count_against_the_address(
    start_server: StartServer, new_client: NewClient
) -> None:
    """An abort tests no password: a client that gives up on a challenge is no guesser."""
    server = await start_server(**limited(failures=2))
    for _ in range(3):
        stream = await RawSasl.open(server)
        try:
            answer = await stream.auth("SCRAM-SHA-256", b64(b"n,,n=alice,r=abcdef"))
            assert condition(answer) == "challenge"
            assert condition(await stream.abort_exchange()) == "aborted"
        finally:
            await stream.close()

    await sign_in(new_client(server, "alice", sasl_mech="PLAIN"), server.host, server.port)


# --- no account enumeration through SCRAM ------------------------------------------------


async def server_first(server: ServerHandle, mechanism: str, name: str) -> dict[str, str]:
    """The attributes of the server-first message a SCRAM client-first for ``name`` gets."""
    stream = await RawSasl.open(server)
    try:
        answer = await stream.auth(mechanism, b64(f"n,,n={name},r=abcdef".encode()))
    finally:
        await stream.close()
    assert condition(answer) == "challenge", answer
    text = base64.b64decode(answer.text or "").decode()
    return dict(part.split("=", 1) for part in text.split(","))


def shape(attributes: dict[str, str]) -> tuple[int, str]:
    """What a real account and a stand-in must share: the salt's length, the iteration count."""
    return len(base64.b64decode(attributes["s"])), attributes["i"]


async def test_an_unknown_name_gets_the_same_scram_salt_after_a_restart(tmp_path: Path) -> None:
    """Two ``chinwag serve`` processes, one after the other, on the same data directory."""
    server = ServerHandle(HOST, free_port(), free_port(), DOMAIN)
    config = write_config(
        tmp_path / "chinwag.toml",
        {
            "domain": DOMAIN,
            "data_dir": str(tmp_path / "data"),
            "c2s": {"host": HOST, "port": server.port, "direct_tls_port": server.direct_tls_port},
            "http": {"host": HOST, "port": free_port()},
        },
    )
    seen = []
    for _start in range(2):
        serve = await ServeProcess.start("--config", str(config), cwd=tmp_path)
        try:
            await serve.announced()
            seen.append(await server_first(server, "SCRAM-SHA-256", "nobody"))
            assert await serve.stop() == 0, serve.output
        finally:
            await serve.kill()

    first, second = seen
    assert (first["s"], first["i"]) == (second["s"], second["i"])


@pytest.mark.parametrize("mechanism", SCRAM)
async def test_an_unknown_name_looks_like_a_real_account(
    server: ServerHandle, mechanism: str
) -> None:
    real = await server_first(server, mechanism, "alice")
    unknown = await server_first(server, mechanism, "nobody")

    assert shape(unknown) == shape(real)


async def test_an_unknown_name_behaves_like_a_real_account_across_mechanisms_and_spellings(
    server: ServerHandle,
) -> None:
    """A real account has a salt per mechanism, and the same one for every spelling of
    its name; so must a name that does not exist."""
    for name in ("alice", "nobody"):
        salts = {
            (mechanism, spelling): (await server_first(server, mechanism, spelling))["s"]
            for mechanism in SCRAM
            for spelling in (name, name.upper())
        }
        sha256, sha1 = SCRAM
        assert salts[sha256, name] == salts[sha256, name.upper()], name
        assert salts[sha1, name] == salts[sha1, name.upper()], name
        assert salts[sha256, name] != salts[sha1, name], name
