"""Connection stores, chosen by URL: `memory://`, `sqlite:///path/to/file.db`,
`dynamodb://TABLE?endpoint=URL&region=REGION&create=true`."""

from __future__ import annotations

from urllib.parse import urlsplit

from wsgate.exceptions import ConfigError
from wsgate.store.base import ConnectionRecord, Store

__all__ = ["DEFAULT_STORE_URL", "ConnectionRecord", "Store", "open_store"]

#: The embedded default: a SQLite file in the working directory.
DEFAULT_STORE_URL = "sqlite:///.wsgate/wsgate.db"


def open_store(url: str) -> Store:
    """A store for `url` (not opened yet: call `await store.open()`).

    - `memory://`: one process, gone when it stops;
    - `sqlite:///relative.db`, `sqlite:////absolute.db`: the embedded default;
    - `dynamodb://TABLE`: shared by every gateway that uses the table. Options: `endpoint`
      (a local DynamoDB such as moto or DynamoDB Local; AWS when absent), `region`
      (default AWS_REGION, AWS_DEFAULT_REGION, then us-east-1), `create=true` (create the
      table if it is missing). Needs boto3: `pip install 'wsgate[aws]'`.
    """
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
    if parts.scheme == "dynamodb":
        from wsgate.store.dynamodb import DynamoDBStore

        return DynamoDBStore.from_url(url)
    raise ConfigError(
        f"unknown store {url!r}: use memory://, sqlite:///path/to/file.db or "
        "dynamodb://TABLE[?endpoint=URL&region=REGION&create=true]"
    )
