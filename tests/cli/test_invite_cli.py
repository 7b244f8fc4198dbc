"""``chinwag invite create``: a sign-up link at ``[http] public_url``, good for one account
until it expires; refused while ``[auth] invitations`` is off."""

import json
import re
from datetime import datetime, timedelta

import pytest
from cli_support import error_line

from chinwag.network.invitations import InvitationService, InvitationState, InvitationUnusable
from chinwag.store.db import Database
from chinwag.store.invitations import SqlInvitationRepository
from chinwag.store.models import utc_now

PUBLIC_URL = "https://chat.example"


@pytest.fixture
def inviting(chinwag):
    """The command with invitations on, behind ``PUBLIC_URL``."""
    with chinwag.config.open("a") as config:
        config.write(f"[http]\npublic_url = '{PUBLIC_URL}/'\n[auth]\ninvitations = true\n")
    return chinwag


async def invitations_of(chinwag) -> tuple[Database, InvitationService]:
    db = Database.open(f"sqlite+aiosqlite:///{chinwag.data_dir / 'chinwag.db'}")
    return db, InvitationService(SqlInvitationRepository(db))


async def test_an_invitation_link_makes_one_account(inviting):
    made = inviting("invite", "create", "--expires", "2d", "--by", "Ops team", "--json")

    assert made.returncode == 0, made.stderr
    printed = json.loads(made.stdout)
    link = re.fullmatch(rf"{PUBLIC_URL}/invite/([A-Za-z0-9_-]{{43}})", printed["link"])
    assert link is not None, printed
    expires_at = datetime.fromisoformat(printed["expires_at"])
    assert abs(expires_at - (utc_now() + timedelta(days=2))) < timedelta(minutes=1)
    assert printed["created_by"] == "Ops team"
    db, invitations = await invitations_of(inviting)
    try:
        assert await invitations.sign_up(link.group(1), "dinah", "a long password") == "dinah"
        with pytest.raises(InvitationUnusable) as used:
            await invitations.sign_up(link.group(1), "kitty", "a long password")
        assert used.value.state is InvitationState.USED
    finally:
        await db.close()
    async with inviting.accounts() as accounts:
        assert await accounts.verify_password("dinah", "a long password")


async def test_the_link_lasts_a_week_by_default_and_is_printed_whole(inviting):
    made = inviting("invite", "create")

    assert made.returncode == 0, made.stderr
    first, link = made.stdout.strip().splitlines()
    assert first.startswith("✓ Invitation made, good for one account until ")
    until = datetime.fromisoformat(first.rsplit(" ", 1)[1].rstrip(":"))
    assert abs(until - (utc_now() + timedelta(days=7))) < timedelta(minutes=1)
    assert re.fullmatch(rf"{PUBLIC_URL}/invite/[A-Za-z0-9_-]{{43}}", link)
    assert made.stderr == ""


def test_without_public_url_the_link_names_the_listener_and_a_note_says_so(chinwag):
    with chinwag.config.open("a") as config:
        config.write("[http]\nhost = '::1'\nport = 5299\n[auth]\ninvitations = true\n")

    made = chinwag("invite", "create", "--json")

    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["link"].startswith("http://[::1]:5299/invite/")
    assert "public_url is not set" in made.stderr


def test_invitations_off_are_refused(chinwag):
    refused = chinwag("invite", "create")

    assert refused.returncode == 1
    assert error_line(refused) == (
        "error: invitations are off: set invitations = true in [auth] and restart the server"
    )


@pytest.mark.parametrize("expires", ["0d", "7", "1y", "-1d", "soon"])
def test_a_bad_lifetime_is_refused(inviting, expires):
    refused = inviting("invite", "create", "--expires", expires)

    assert refused.returncode == 1
    assert error_line(refused) == (
        f"error: --expires {expires!r} is not a duration such as 30m, 12h, 7d or 2w"
    )


def test_a_lifetime_over_a_year_is_refused(inviting):
    refused = inviting("invite", "create", "--expires", "60w")

    assert refused.returncode == 1
    assert error_line(refused) == "error: an invitation lasts more than 0 and at most 366 days"
