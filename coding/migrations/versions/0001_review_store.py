"""The review store: coded transcripts, the model's suggestions, the reviewers' decisions.

Revision ID: 0001
Revises:
Create Date: 2026-05-20

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

ACTIONS = ("accept", "reject", "relabel", "respan", "note", "add")


def upgrade() -> None:
    # Everything the interview page shows: the normalised text the offsets index, and the turns
    # (speakers, roles, timestamps, offsets, source lines) as Transcript.turns dumps them.
    op.create_table(
        "transcripts",
        sa.Column("study", sa.Text, primary_key=True),
        sa.Column("transcript_id", sa.Text, primary_key=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("source_path", sa.Text, nullable=False),
        sa.Column("format", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("turns", sa.JSON, nullable=False),
        sa.Column("interviewers", sa.JSON, nullable=False),
        sa.Column("coded_at", sa.DateTime(timezone=True), nullable=False),
    )
    # The latest run's codes of each transcript; the decisions answering them are kept apart.
    op.create_table(
        "suggestions",
        sa.Column("study", sa.Text, primary_key=True),
        sa.Column("transcript_id", sa.Text, primary_key=True),
        sa.Column("code_id", sa.Text, primary_key=True),
        sa.Column("code", sa.JSON, nullable=False),
        sa.Column("provenance", sa.JSON, nullable=False),
        sa.Column("suggested_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["study", "transcript_id"], ["transcripts.study", "transcripts.transcript_id"]),
    )
    # Append-only: a code's latest row is its standing; the earlier ones are its history.
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("study", sa.Text, nullable=False),
        sa.Column("transcript_id", sa.Text, nullable=False),
        sa.Column("code_id", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("reviewer", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("suggestion", sa.JSON, nullable=True),
        sa.Column("code", sa.JSON, nullable=True),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
        sa.CheckConstraint("action IN ({})".format(", ".join(f"'{a}'" for a in ACTIONS)), name="known_action"),
        sa.ForeignKeyConstraint(["study", "transcript_id"], ["transcripts.study", "transcripts.transcript_id"]),
    )
    op.create_index("decisions_by_code", "decisions", ["study", "transcript_id", "code_id", "id"])


def downgrade() -> None:
    op.drop_index("decisions_by_code", table_name="decisions")
    op.drop_table("decisions")
    op.drop_table("suggestions")
    op.drop_table("transcripts")
