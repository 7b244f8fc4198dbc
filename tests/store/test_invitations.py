"""Invitations on both engines: one account per invitation however people race for it,
nothing spent when the account cannot be made, an expiry that counts at the moment of
use, and the password change event that the XMPP side acts on."""

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from chinwag.network.accounts import AccountExists, AccountService, InvalidPassword
from chinwag.network.events import ACCOUNT_PASSWORD_CHANGED, EventLog, resource_mark
from chinwag.network.invitations import InvitationService, InvitationState, InvitationUnusable
from chinwag.store.accounts import SqlAccountRepository
from chinwag.store.events import SqlEventRepository
from chinwag.store.invitations import SqlInvitationRepository
from chinwag.store.models import Invitation, utc_now

PASSWORD = "a long enough password"


@pytest.fixture
def invitations(database):
    return InvitationService(SqlInvitationRepository(database))


async def test_people_racing_with_one_invitation_make_one_account(database, invitations):
    made = await invitations.create("ops", timedelta(days=1))

    outcomes = await asyncio.gather(
        *(invitations.sign_up(made.token, f"user{n}", PASSWORD) for n in range(5)),
        return_exceptions=True,
    )

    created = [outcome for outcome in outcomes if isinstance(outcome, str)]
    refused = [outcome for outcome in outcomes if isinstance(outcome, InvitationUnusable)]
    assert len(created) == 1 and len(refused) == 4, outcomes
    assert {error.state for error in refused} == {InvitationState.USED}
    accounts = AccountService(SqlAccountRepository(database))
    assert [user.username for user in await accounts.list_users()] == created
    async with database.sessions() as session:
        row = (await session.execute(select(Invitation))).scalar_one()
    assert (row.used_by, row.created_by) == (created[0], "ops")


async def test_an_invitation_is_spent_only_with_its_account(database, invitations):
    accounts = AccountService(SqlAccountRepository(database))
    await accounts.add_user("alice", PASSWORD)
    made = await invitations.create("ops", timedelta(days=1))

    with pytest.raises(AccountExists):
        await invitations.sign_up(made.token, "Alice", PASSWORD)
    with pytest.raises(InvalidPassword):
        await invitations.sign_up(made.token, "dinah", "short")

    assert (await invitations.check(made.token)).used_at is None
    assert await invitations.sign_up(made.token, "dinah", PASSWORD) == "dinah"


async def test_the_expiry_counts_when_the_invitation_is_used(database, invitations):
    made = await invitations.create("ops", timedelta(hours=1))
    async with database.sessions.begin() as session:
        await session.execute(update(Invitation).values(expires_at=utc_now()))

    with pytest.raises(InvitationUnusable) as expired:
        await invitations.sign_up(made.token, "dinah", PASSWORD)

    assert expired.value.state is InvitationState.EXPIRED
    with pytest.raises(InvitationUnusable) as unknown:
        await invitations.check(made.token + "x")
    assert unknown.value.state is InvitationState.UNKNOWN


@pytest.mark.parametrize("lifetime", [timedelta(0), timedelta(days=367)])
async def test_a_lifetime_is_bounded(invitations, lifetime):
    with pytest.raises(ValueError, match="at most 366 days"):
        await invitations.create("ops", lifetime)


async def test_a_password_change_keeps_the_salts_and_is_announced(database):
    events = EventLog(database)
    accounts = AccountService(SqlAccountRepository(database), events)
    await accounts.add_user("alice", PASSWORD)
    before = await accounts.scram_credentials("alice", "SCRAM-SHA-256")

    await accounts.change_password("alice", "another long password", kept_resource="phone")
    await accounts.change_password("alice", "a third long password")

    after = await accounts.scram_credentials("alice", "SCRAM-SHA-256")
    assert before is not None and after is not None
    assert (after.salt, after.iterations) == (before.salt, before.iterations)
    assert after.stored_key != before.stored_key
    assert await accounts.verify_password("alice", "a third long password")
    changes = [
        (event.subject, event.detail, event.origin)
        for event in await SqlEventRepository(database).since(0)
        if event.kind == ACCOUNT_PASSWORD_CHANGED
    ]
    assert changes == [
        ("alice", resource_mark("phone"), events.origin),
        ("alice", None, events.origin),
    ]
