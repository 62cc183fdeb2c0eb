"""Connection stores, chosen by URL: `memory://`, `sqlite:///path/to/file.db`,
`dynamodb://TABLE?endpoint=URL&region=REGION&create=true`, `redis://HOST:PORT`."""

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
      table if it is missing). Needs boto3: `pip install 'wsgate[aws]'`;
    - `redis://[:PASSWORD@]HOST[:PORT][/DB]`, `rediss://...` (TLS),
      `redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/SERVICE[/DB]` (the master the
      Sentinels name, followed across failovers; the password is the master's): shared by
      every gateway node that uses the same server and prefix. The password may come from
      WSGATE_REDIS_PASSWORD instead of the URL. Options: `prefix` (default `wsgate`: keys
      are `{wsgate}:...`, so several deployments can share one server), and redis-py's
      `socket_timeout`, `socket_connect_timeout`, `max_connections`, `ssl_ca_certs`,
      `ssl_cert_reqs`, `ssl_certfile`, `ssl_keyfile`, `ssl_check_hostname`. Needs
      redis-py: `pip install 'wsgate[redis]'`.
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
    if parts.scheme in ("redis", "rediss", "redis+sentinel"):
        from wsgate.store.redis import RedisStore

        return RedisStore(url)
    raise ConfigError(
        f"unknown store {url!r}: use memory://, sqlite:///path/to/file.db, "
        "dynamodb://TABLE[?endpoint=URL&region=REGION&create=true] or "
        "redis://HOST[:PORT][/DB][?prefix=NAME]"
    )
