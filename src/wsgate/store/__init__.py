"""Connection stores, chosen by URL: `memory://`, `sqlite:///path/to/file.db`."""

from __future__ import annotations

from urllib.parse import urlsplit

from wsgate.exceptions import ConfigError
from wsgate.store.base import ConnectionRecord, Store

__all__ = ["DEFAULT_STORE_URL", "ConnectionRecord", "Store", "open_store"]

#: The embedded default: a SQLite file in the working directory.
DEFAULT_STORE_URL = "sqlite:///.wsgate/wsgate.db"


def open_store(url: str) -> Store:
    """A store for `url` (not opened yet: call `await store.open()`)."""
    parts = urlsplit(url)
    if parts.scheme == "memory":
        from wsgate.store.memory import MemoryStore

        return MemoryStore()
    if parts.scheme == "sqlite":
        # sqlite:///relative.db and sqlite:////absolute.db, as in SQLAlchemy URLs.
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path:
            raise ConfigError(
                f"sqlite store URL needs a file path: sqlite:///path/to.db, got {url!r}"
            )
        from wsgate.store.sqlite import SQLiteStore

        return SQLiteStore(path)
    raise ConfigError(f"unknown store {url!r}: use memory:// or sqlite:///path/to/file.db")
