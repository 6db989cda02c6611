"""Decisions: a reset (a person takes their decision back; the code is the model's suggestion again).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06

"""
from typing import Sequence, Union

from alembic import op

revision: str = "0002"
down_revision: Union[str, Sequence[str], None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

BEFORE = ("accept", "reject", "relabel", "respan", "note", "add")
ACTIONS = (*BEFORE, "reset")


def _allow(actions: Sequence[str]) -> None:
    # SQLite cannot alter a CHECK constraint: batch mode copies the table (rows, index and keys kept).
    with op.batch_alter_table("decisions") as batch:
        batch.drop_constraint("known_action", type_="check")
        batch.create_check_constraint("known_action", "action IN ({})".format(", ".join(f"'{a}'" for a in actions)))


def upgrade() -> None:
    _allow(ACTIONS)


def downgrade() -> None:
    op.execute("DELETE FROM decisions WHERE action = 'reset'")  # the older schema cannot hold them
    _allow(BEFORE)
