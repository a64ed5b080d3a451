"""production-sized tables: one index over the live executions, autovacuum for action_executions

`ix_action_executions_live` (queue_id, state, id) holds only pending and claimed rows and
replaces `ix_action_executions_queue_pending` (queue_id, id, pending rows): it serves the claim
and every backlog check (next_look, the metrics backlog, the queue listing, the cleaner), so none
of them reads the terminal rows that 35 days of retention keep. Both index changes run
CONCURRENTLY, so intake keeps writing while the index builds on a large table, and the new
index exists before the old one goes; an invalid index left by an interrupted build is dropped
and built again.

Autovacuum for action_executions runs after 1% of the table (plus 10,000 rows) changed instead
of 20%, so the dead index entries that every state change leaves in the partial indexes are
removed every few hours at 12M rows rather than every few days, and the planner's statistics
follow the share of live rows.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 14:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

TABLE = 'action_executions'
AUTOVACUUM = {
    'autovacuum_vacuum_scale_factor': '0.01',
    'autovacuum_vacuum_threshold': '10000',
    'autovacuum_analyze_scale_factor': '0.01',
    'autovacuum_analyze_threshold': '10000',
}
LIVE = ('ix_action_executions_live', ['queue_id', 'state', 'id'], "state IN ('pending', 'claimed')")
PENDING = ('ix_action_executions_queue_pending', ['queue_id', 'id'], "state = 'pending'")


def _valid(name):
    """True: a valid index of that name exists; False: an invalid one; None: none."""
    return op.get_bind().execute(
        sa.text(
            'SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid'
            ' WHERE c.relname = :name'
        ),
        {'name': name},
    ).scalar()


def _build(index):
    """Create `index` concurrently unless a valid one exists (outside a transaction)."""
    name, columns, where = index
    valid = _valid(name)
    if valid is False:
        op.drop_index(name, table_name=TABLE, postgresql_concurrently=True)
    if valid is not True:
        op.create_index(
            name,
            TABLE,
            columns,
            unique=False,
            postgresql_where=sa.text(where),
            postgresql_concurrently=True,
        )


def _swap(new, old):
    """Build `new`, then drop `old`, both concurrently; the service's statement timeout does
    not apply (a build reads the whole table)."""
    with op.get_context().autocommit_block():
        op.execute('SET statement_timeout = 0')
        _build(new)
        op.drop_index(old[0], table_name=TABLE, postgresql_concurrently=True, if_exists=True)
        op.execute('RESET statement_timeout')


def upgrade():
    settings = ', '.join(f'{name} = {value}' for name, value in AUTOVACUUM.items())
    op.execute(f'ALTER TABLE {TABLE} SET ({settings})')
    _swap(LIVE, PENDING)


def downgrade():
    _swap(PENDING, LIVE)
    op.execute(f"ALTER TABLE {TABLE} RESET ({', '.join(AUTOVACUUM)})")
