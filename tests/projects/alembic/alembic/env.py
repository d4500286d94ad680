"""Alembic's environment: the database is DATABASE_URL, as the app has it."""

import os

from alembic import context
from sqlalchemy import create_engine


def run_migrations_online() -> None:
    url = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(url)
    with engine.connect() as connection:
        context.configure(connection=connection, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
