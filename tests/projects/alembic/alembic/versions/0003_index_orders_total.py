"""index orders.total, the unsafe way: without CONCURRENTLY"""

from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_index("orders_total_idx", "orders", ["total"])
    op.execute("SELECT pg_sleep(1.5)")  # what the build takes on a big table
