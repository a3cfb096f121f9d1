"""Alembic environment: the tables' metadata, batch mode so SQLite and PostgreSQL share migrations."""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context

from vocalis.storage.db import make_engine, normalise_url
from vocalis.storage.tables import metadata


def _url() -> str:
    url = context.config.get_main_option("sqlalchemy.url") or os.environ.get("VOCALIS_DATABASE_URL")
    if not url:
        from vocalis.service.settings import Settings

        url = Settings().database_url
    return normalise_url(url)


def run_offline() -> None:
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = make_engine(_url())
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


def main() -> None:
    """Run the migrations Alembic asked for (offline: print SQL; online: execute)."""
    config = context.config
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    if context.is_offline_mode():
        run_offline()
    else:
        run_online()


# Alembic runs this file inside an EnvironmentContext; a plain import (doctest collection) does nothing.
if getattr(context, "config", None) is not None:
    main()
