"""Alembic environment of the review store: run by jtbd.coding.reviews on the connection it opened,
inside the transaction it began (so two processes opening a new database migrate it once), never
from a URL or an alembic.ini."""

from alembic import context

context.configure(connection=context.config.attributes["connection"], target_metadata=None,
                  version_table=context.config.attributes["version_table"],
                  render_as_batch=True)  # SQLite alters a table by copying it

with context.begin_transaction():
    context.run_migrations()
