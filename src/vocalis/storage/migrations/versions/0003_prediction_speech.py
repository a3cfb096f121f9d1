"""Whether a predicted clip held speech (voice activity), kept with the prediction.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 08:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # nullable: predictions made before this revision were not checked
    with op.batch_alter_table('predictions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('speech_detected', sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column('voiced_s', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('predictions', schema=None) as batch_op:
        batch_op.drop_column('voiced_s')
        batch_op.drop_column('speech_detected')
