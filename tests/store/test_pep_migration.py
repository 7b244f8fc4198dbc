"""Revision 0013 adds PEP subscriptions and the ``roster`` model's groups: nodes stored
before it keep their configuration (with no groups) on SQLite and PostgreSQL, and a
downgrade drops what the revision added."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer, String, column, insert, inspect, table

from chinwag.store.accounts import ACCOUNT_ID
from chinwag.store.db import downgrade_to
from chinwag.store.pep import NodeConfig, SqlPepRepository

Network = Any

OLD_NODES = table(
    "pep_nodes",
    column("account_id", Integer()),
    column("node", String()),
    column("access_model", String()),
    column("max_items", Integer()),
)


def tables_and_node_columns(connection: Any) -> tuple[set[str], set[str]]:
    inspector = inspect(connection)
    columns = {found["name"] for found in inspector.get_columns("pep_nodes")}
    return set(inspector.get_table_names()), columns


async def test_nodes_of_revision_0012_keep_their_configuration(
    network: Network, database: Any
) -> None:
    await network.add_users("alice")
    async with database.engine.begin() as connection:
        await connection.run_sync(downgrade_to, "0012")
        names, columns = await connection.run_sync(tables_and_node_columns)
        assert "pep_subscriptions" not in names and "roster_groups" not in columns
        alice = await connection.scalar(ACCOUNT_ID, {"username": "alice"})
        await connection.execute(
            insert(OLD_NODES),
            [{"account_id": alice, "node": "n", "access_model": "open", "max_items": 3}],
        )
    await database.migrate()
    pep = SqlPepRepository(database)

    assert await pep.node("alice", "n") == NodeConfig("open", 3)
    assert await pep.subscribe("alice", "n", ["bob@localhost"])
    assert await pep.subscriptions("alice", "n") == ["bob@localhost"]
