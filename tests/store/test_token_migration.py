"""Revision 0014 gives each OAuth issuance ``usable_until``: rows written before it get
their refresh token's expiry, or their access token's without one, on SQLite and
PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import select
from test_oauth_repository import new_app, new_token, scram

from chinwag.store.accounts import SqlAccountRepository
from chinwag.store.db import downgrade_to
from chinwag.store.oauth import SqlOAuthRepository
from chinwag.store.oauth_models import OAuthToken


async def test_issuances_before_revision_0014_get_when_their_last_token_expires(
    database: Any,
) -> None:
    await SqlAccountRepository(database).add("alice", [scram("SCRAM-SHA-256")])
    repo = SqlOAuthRepository(database)
    await repo.add_app(new_app())
    with_refresh = new_token("1")
    access_only = replace(new_token("2"), refresh_hash=None, refresh_expires_at=None)
    for token in (with_refresh, access_only):
        await repo.add_token(token)
    async with database.engine.begin() as connection:
        await connection.run_sync(downgrade_to, "0013")
    await database.migrate()

    async with database.sessions() as session:
        found = dict(
            (await session.execute(select(OAuthToken.access_hash, OAuthToken.usable_until))).all()
        )

    assert found == {
        with_refresh.access_hash: with_refresh.refresh_expires_at,
        access_only.access_hash: access_only.expires_at,
    }
