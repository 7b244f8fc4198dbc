"""Alembic environment: migrates over the connection that ``chinwag.store.db`` lends.

``Database.migrate`` opens an async connection and calls Alembic through
``run_sync``, so this file only ever sees a synchronous ``Connection``.
"""

from alembic import context

from chinwag.store.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
