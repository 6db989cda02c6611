"""Transcripts: an index holding when each was coded, so asking every transcript's version (the web
app does on each request) reads the index alone, not the rows with their whole text.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06

"""
from typing import Sequence, Union

from alembic import op

revision: str = "0003"
down_revision: Union[str, Sequence[str], None] = "0002"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_index("transcripts_coded", "transcripts", ["study", "transcript_id", "coded_at"])


def downgrade() -> None:
    op.drop_index("transcripts_coded", table_name="transcripts")
