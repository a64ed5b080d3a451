"""release policies: a queue's days, window, zone, start and mode; execution priority; named queues

throttle_queues gets the policy of the latest admitted execution (release_mode, release_days as
a bitmask of ISO weekdays, window_start/window_end local times, time_zone, start_at) and the
name of a shared queue. Its action_id (and throttle_configs') widens to 72 characters: a named
queue's override is addressed as `queue:<name>` (name up to 64). window_period_seconds becomes
double precision: a spread queue's windows are T/N apart, often less than a second.

action_executions gets `priority` (0-9), and the live index becomes
(queue_id, state, priority DESC, id), the order the claim takes rows in: built CONCURRENTLY
under a new name before the old one is dropped (as 0004 does), so intake keeps writing.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 17:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

TABLE = 'action_executions'
WHERE = "state IN ('pending', 'claimed')"
OLD_LIVE = 'ix_action_executions_live'
NEW_LIVE = 'ix_action_executions_live_priority'


def _valid(name):
    """True: a valid index of that name exists; False: an invalid one; None: none."""
    return op.get_bind().execute(
        sa.text(
            'SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid'
            ' WHERE c.relname = :name'
        ),
        {'name': name},
    ).scalar()


def _build(name, columns):
    """Create the live index `name` concurrently unless a valid one exists."""
    valid = _valid(name)
    if valid is False:  # an interrupted concurrent build
        op.drop_index(name, table_name=TABLE, postgresql_concurrently=True)
    if valid is not True:
        op.create_index(
            name,
            TABLE,
            columns,
            unique=False,
            postgresql_where=sa.text(WHERE),
            postgresql_concurrently=True,
        )


def _swap(new, columns, old):
    with op.get_context().autocommit_block():
        op.execute('SET statement_timeout = 0')
        _build(new, columns)
        op.drop_index(old, table_name=TABLE, postgresql_concurrently=True, if_exists=True)
        op.execute('RESET statement_timeout')


def upgrade():
    with op.batch_alter_table('throttle_queues', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('release_mode', sa.String(length=8), server_default='burst', nullable=False)
        )
        batch_op.add_column(sa.Column('release_days', sa.SmallInteger(), nullable=True))
        batch_op.add_column(sa.Column('window_start', sa.Time(), nullable=True))
        batch_op.add_column(sa.Column('window_end', sa.Time(), nullable=True))
        batch_op.add_column(sa.Column('time_zone', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('start_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('queue_name', sa.String(length=64), nullable=True))
        batch_op.alter_column(
            'action_id', existing_type=sa.String(length=64), type_=sa.String(length=72)
        )
        batch_op.alter_column(
            'window_period_seconds', existing_type=sa.Integer(), type_=sa.Double()
        )
        batch_op.create_check_constraint(
            'ck_throttle_queues_release_mode', "release_mode IN ('burst', 'spread')"
        )
        batch_op.create_check_constraint(
            'ck_throttle_queues_release_days', 'release_days BETWEEN 1 AND 127'
        )
        batch_op.create_check_constraint(
            'ck_throttle_queues_window', '(window_start IS NULL) = (window_end IS NULL)'
        )
    with op.batch_alter_table('throttle_configs', schema=None) as batch_op:
        batch_op.alter_column(
            'action_id', existing_type=sa.String(length=64), type_=sa.String(length=72)
        )
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('priority', sa.SmallInteger(), server_default='0', nullable=False)
        )
        batch_op.create_check_constraint(
            'ck_action_executions_priority', 'priority BETWEEN 0 AND 9'
        )
    _swap(NEW_LIVE, ['queue_id', 'state', sa.text('priority DESC'), 'id'], OLD_LIVE)


def downgrade():
    _swap(OLD_LIVE, ['queue_id', 'state', 'id'], NEW_LIVE)
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.drop_constraint('ck_action_executions_priority', type_='check')
        batch_op.drop_column('priority')
    with op.batch_alter_table('throttle_configs', schema=None) as batch_op:
        batch_op.alter_column(
            'action_id', existing_type=sa.String(length=72), type_=sa.String(length=64)
        )
    with op.batch_alter_table('throttle_queues', schema=None) as batch_op:
        batch_op.drop_constraint('ck_throttle_queues_window', type_='check')
        batch_op.drop_constraint('ck_throttle_queues_release_days', type_='check')
        batch_op.drop_constraint('ck_throttle_queues_release_mode', type_='check')
        batch_op.alter_column(
            'window_period_seconds',
            existing_type=sa.Double(),
            type_=sa.Integer(),
            postgresql_using='ceil(window_period_seconds)::integer',
        )
        batch_op.alter_column(
            'action_id', existing_type=sa.String(length=72), type_=sa.String(length=64)
        )
        batch_op.drop_column('queue_name')
        batch_op.drop_column('start_at')
        batch_op.drop_column('time_zone')
        batch_op.drop_column('window_end')
        batch_op.drop_column('window_start')
        batch_op.drop_column('release_days')
        batch_op.drop_column('release_mode')
