"""monitoring: webhook secrets stored sealed with the artifact keys, which takes a longer column

Revision ID: 0024
Revises: 0021
Create Date: 2026-12-06

The secrets stored before stay as they are (a migration has no key to seal them with); they are read as
they are (services/monitoring/webhook_secrets.py) until their rule's webhook URL changes.
"""

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alert_rules") as table:
        table.alter_column("webhook_secret", existing_type=sa.String(128), type_=sa.String(255), existing_nullable=True)


def downgrade() -> None:
    # A sealed secret does not fit the old column, and cannot be opened here: the rules lose their webhooks'
    # secrets, as they would their URLs' receivers, and get new ones when their URLs are set again.
    op.execute("UPDATE alert_rules SET webhook_secret = NULL, webhook_url = NULL WHERE length(webhook_secret) > 128")
    with op.batch_alter_table("alert_rules") as table:
        table.alter_column("webhook_secret", existing_type=sa.String(255), type_=sa.String(128), existing_nullable=True)
