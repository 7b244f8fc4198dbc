"""Moving between Debian's Prosody and chinwag, both ways, through XEP-0227 files.

From Prosody: users registered with ``prosodyctl`` become contacts and set their vCards
with slixmpp, ``prosody-migrator`` writes Prosody's storage out as XEP-0227 files,
``chinwag import`` reads them, and the users sign in to chinwag with the SCRAM-SHA-1
verifiers Prosody had, to find their contacts and vCards. To Prosody: ``chinwag
export --split`` writes one file per user, ``prosody-migrator`` reads them into
Prosody's internal storage, and the users sign in to Prosody, where a member of a
whitelisted PEP node reads it.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp import ClientXMPP

from chinwag.app import running
from chinwag.cli import Network
from chinwag.config import settings_from_mapping
from chinwag.store.db import Database
from chinwag.store.pep import NodeConfig, SqlPepRepository, StoredItem

from .prosody_support import (
    DOMAIN,
    Prosody,
    give_to_prosody,
    migrate,
    prosody_directory,
    require_prosody,
)
from .support import HOST, TIMEOUT, close_client, make_client, sign_in
from .test_serve import run_chinwag, write_config

pytestmark = pytest.mark.slow  # Debian's Prosody may be installed first


@pytest.fixture(scope="module", autouse=True)
def prosody_installed() -> None:
    require_prosody()


PASSWORDS = {"alice": "alice-secret", "bob": "bob-secret"}
PHOTO = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
PROFILE_STORES = ("accounts", "roster", "vcard", "pep-pubsub")
CLUB = "urn:example:club"
PUBSUB = "http://jabber.org/protocol/pubsub"


@pytest.fixture
def workspace() -> Iterator[Path]:
    with prosody_directory() as directory:
        yield directory


@pytest.fixture
async def clients() -> AsyncIterator[list[ClientXMPP]]:
    """Every client a test makes, closed at its end."""
    made: list[ClientXMPP] = []
    yield made
    await asyncio.gather(*(close_client(client) for client in made))


def chinwag_config(directory: Path) -> Path:
    return write_config(
        directory / "chinwag.toml",
        {
            "domain": DOMAIN,
            "data_dir": str(directory / "chinwag-data"),
            "c2s": {"host": HOST, "port": 0, "direct_tls_port": 0},
            "http": {"host": HOST, "port": 0},
        },
    )


async def roster_of(client: ClientXMPP) -> dict[str, Any]:
    """The client's roster as the server has it, by JID: subscription, name, groups."""
    await client.get_roster()
    roster = client.client_roster
    return {
        jid: (roster[jid]["subscription"], roster[jid]["name"], sorted(roster[jid]["groups"]))
        for jid in roster
    }


async def until_mutual(client: ClientXMPP, contact: str) -> None:
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while (await roster_of(client)).get(contact, ("none",))[0] != "both":
        assert asyncio.get_running_loop().time() < deadline, f"{contact} never became mutual"
        await asyncio.sleep(0.2)


async def vcard_of(client: ClientXMPP, jid: str) -> dict[str, Any]:
    card = (await client.plugin["xep_0054"].get_vcard(jid, timeout=TIMEOUT))["vcard_temp"]
    photo = card["PHOTO"]
    nicknames = card["NICKNAME"]  # slixmpp gives a list: a vCard may have several
    return {
        "FN": card["FN"],
        "NICKNAME": ", ".join(nicknames) if isinstance(nicknames, list) else nicknames,
        "PHOTO": (photo["TYPE"], photo["BINVAL"]) if photo["BINVAL"] else None,
    }


async def fill_prosody(prosody: Prosody, clients: list[ClientXMPP]) -> None:
    """alice and bob, mutual contacts, with vCards set as clients set them."""
    for user, password in PASSWORDS.items():
        prosody.register(user, password)
    await prosody.start()
    alice = prosody.client("alice", PASSWORDS["alice"], ("xep_0054",))
    bob = prosody.client("bob", PASSWORDS["bob"], ("xep_0054",))
    clients += [alice, bob]
    for client in (alice, bob):
        client.auto_authorize = True
        client.auto_subscribe = True
        await prosody.sign_in(client)
        client.send_presence()
    await alice.update_roster(f"bob@{DOMAIN}", name="Bobby", groups=["Friends"])
    alice.send_presence_subscription(f"bob@{DOMAIN}")
    await until_mutual(alice, f"bob@{DOMAIN}")
    await until_mutual(bob, f"alice@{DOMAIN}")
    card = alice.plugin["xep_0054"].make_vcard()
    card["FN"] = "Alice Liddell"
    card["NICKNAME"] = "ali"
    card["PHOTO"]["TYPE"] = "image/png"
    card["PHOTO"]["BINVAL"] = PHOTO
    await alice.plugin["xep_0054"].publish_vcard(card)
    card = bob.plugin["xep_0054"].make_vcard()
    card["FN"] = "Bob Builder"
    await bob.plugin["xep_0054"].publish_vcard(card)


async def test_prosodys_users_sign_in_to_chinwag_with_their_contacts_and_vcards(
    workspace: Path, clients: list[ClientXMPP]
) -> None:
    prosody = Prosody(workspace / "prosody")
    try:
        await fill_prosody(prosody, clients)
    finally:
        prosody.stop()
    exported = workspace / "xep0227"
    exported.mkdir()
    give_to_prosody(exported)
    migrate(
        workspace,
        exported,
        {"type": "internal", "path": str(prosody.data)},
        {"type": "xep0227"},
        PROFILE_STORES,
    )
    assert sorted(path.name for path in exported.iterdir()) == [
        f"alice@{DOMAIN}.xml",
        f"bob@{DOMAIN}.xml",
    ]
    config = chinwag_config(workspace)
    created = run_chinwag("db", "migrate", "--config", str(config), cwd=workspace)
    assert created.returncode == 0, created.stderr

    imported = run_chinwag("import", str(exported), "--config", str(config), cwd=workspace)

    assert imported.returncode == 0, imported.stderr
    assert "Imported 2 users, 2 contacts, 2 profiles" in imported.stdout
    settings = settings_from_mapping(
        {
            "domain": DOMAIN,
            "data_dir": str(workspace / "chinwag-data"),
            "c2s": {"host": HOST, "port": 0, "direct_tls_port": 0},
            "http": {"host": HOST, "port": 0},
        }
    )
    async with running(settings) as app:
        port = app.xmpp.ports["c2s"]
        plugins = ("xep_0030", "xep_0054")
        alice = make_client(
            f"alice@{DOMAIN}/x", PASSWORDS["alice"], sasl_mech="SCRAM-SHA-1", plugins=plugins
        )
        bob = make_client(f"bob@{DOMAIN}/y", PASSWORDS["bob"], sasl_mech="PLAIN", plugins=plugins)
        clients += [alice, bob]
        await sign_in(alice, HOST, port)
        await sign_in(bob, HOST, port)  # PLAIN, checked against Prosody's SCRAM-SHA-1 verifier

        assert await roster_of(alice) == {f"bob@{DOMAIN}": ("both", "Bobby", ["Friends"])}
        assert (await roster_of(bob))[f"alice@{DOMAIN}"][0] == "both"
        assert await vcard_of(alice, f"alice@{DOMAIN}") == {
            "FN": "Alice Liddell",
            "NICKNAME": "ali",
            "PHOTO": ("image/png", PHOTO),
        }
        assert (await vcard_of(alice, f"bob@{DOMAIN}"))["FN"] == "Bob Builder"


async def test_chinwags_export_loads_into_prosody(
    workspace: Path, clients: list[ClientXMPP]
) -> None:
    config = chinwag_config(workspace)
    db = Database.open(f"sqlite+aiosqlite:///{workspace / 'chinwag-data' / 'chinwag.db'}")
    await db.migrate()
    try:
        network = Network.over(db)
        for user, password in PASSWORDS.items():
            await network.accounts.add_user(user, password)
        await network.contacts.add_mutual("alice", "bob")
        await network.profiles.set_fields("alice", fn="Alice Liddell", nickname="ali")
        pep = SqlPepRepository(db)
        item = StoredItem("first", f"<n xmlns='{CLUB}'/>")
        await pep.publish("alice", CLUB, NodeConfig("whitelist", 5), item)
        await pep.set_affiliations("alice", CLUB, {f"bob@{DOMAIN}": "member"})
    finally:
        await db.close()
    exported = workspace / "export"

    result = run_chinwag("export", "--split", str(exported), "--config", str(config), cwd=workspace)

    assert result.returncode == 0, result.stderr
    give_to_prosody(exported)
    prosody = Prosody(workspace / "prosody")
    migrate(
        workspace,
        exported,
        {"type": "xep0227"},
        {"type": "internal", "path": str(prosody.data)},
        ("accounts", "roster", "vcard", "pep-pubsub"),
    )
    await prosody.start()
    try:
        alice = prosody.client("alice", PASSWORDS["alice"], ("xep_0054",))
        bob = prosody.client("bob", PASSWORDS["bob"], ("xep_0054", "xep_0060"))
        clients += [alice, bob]
        await prosody.sign_in(alice)
        await prosody.sign_in(bob)

        assert await roster_of(alice) == {f"bob@{DOMAIN}": ("both", "", [])}
        assert (await roster_of(bob))[f"alice@{DOMAIN}"][0] == "both"
        card = await vcard_of(alice, f"alice@{DOMAIN}")
        assert (card["FN"], card["NICKNAME"]) == ("Alice Liddell", "ali")
        # bob reads alice's whitelisted node as the member the export named him
        found = await bob.plugin["xep_0060"].get_items(f"alice@{DOMAIN}", CLUB, timeout=TIMEOUT)
        assert [i.get("id") for i in found.xml.iter(f"{{{PUBSUB}}}item")] == ["first"]
    finally:
        prosody.stop()
