"""Persistence: SQLAlchemy tables, owner-scoped repositories, Alembic migrations.

Nothing here imports FastAPI. The service migrates the database at startup with
:func:`vocalis.storage.migrate.migrate`.
"""

from vocalis.storage.db import make_engine, make_session_factory, normalise_url, ping, transaction
from vocalis.storage.migrate import migrate

__all__ = ["make_engine", "make_session_factory", "migrate", "normalise_url", "ping", "transaction"]
