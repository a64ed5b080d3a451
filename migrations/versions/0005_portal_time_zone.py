"""portal time zone: the zone release policies use when an action names none

HubSpot's account details (`GET /account-info/v3/details`, field `timeZone`) are read at install
and refreshed daily by the cleaner; NULL means not known yet (policies use UTC until then).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 16:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('oauth_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('time_zone', sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column('time_zone_checked_at', sa.DateTime(timezone=True), nullable=True)
        )


def downgrade():
    with op.batch_alter_table('oauth_tokens', schema=None) as batch_op:
        batch_op.drop_column('time_zone_checked_at')
        batch_op.drop_column('time_zone')
