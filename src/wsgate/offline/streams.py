"""DynamoDB Stream event sources on a local DynamoDB: polled as Lambda polls them.

Lambda reads a table's stream for the functions subscribed to it and invokes each with
`{"Records": [...]}` batches of up to its batch size, from its starting position (LATEST or
TRIM_HORIZON). Locally one thread per subscription does the same against the local
DynamoDB's stream API (`describe_stream`, `get_shard_iterator`, `get_records`) every
`POLL_INTERVAL` seconds and invokes the function through its function process. A batch
whose invocation fails is retried, as Lambda retries it: the same records again, nothing
after them read meanwhile, until it succeeds or MaximumRetryAttempts (-1: no limit; Lambda
stops when the records expire after 24 hours) is spent; then it is discarded and logged.
Locally the retries back off from `POLL_INTERVAL` to `MAX_RETRY_DELAY` seconds.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from wsgate.offline.pool import FunctionError, FunctionPool
from wsgate.offline.spec import StreamSpec

log = logging.getLogger("wsgate.offline")

#: Seconds between two reads of a stream (Lambda polls a shard about 4 times a second).
POLL_INTERVAL = 0.5
#: The longest wait between two retries of a failed batch.
MAX_RETRY_DELAY = 30.0


class StreamPoller:
    """One function's subscription to one table's stream, polled on a thread of its own."""

    def __init__(self, pool: FunctionPool, stream: StreamSpec, client_options: Mapping[str, Any]):
        import boto3

        self.pool = pool
        self.stream = stream
        self._client = boto3.client("dynamodbstreams", **client_options)
        self._arn = ""
        #: Shard id -> where to read it next (None once a closed shard is read to its end).
        self._iterators: dict[str, str | None] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"wsgate-stream-{pool.spec.name}", daemon=True
        )

    def start(self) -> None:
        """Find the stream and its starting position now (a LATEST stream begins with the
        writes made after this), then poll it on the thread."""
        from botocore.exceptions import BotoCoreError, ClientError

        name, table = self.pool.spec.name, self.stream.table
        try:
            streams = self._client.list_streams(TableName=table).get("Streams", [])
            if not streams:
                log.warning(
                    "function %s: table %s has no stream (StreamSpecification): not polled",
                    name,
                    table,
                )
                return
            self._arn = streams[0]["StreamArn"]
            self._read_shards(self.stream.starting_position)
        except (BotoCoreError, ClientError) as exc:
            log.error("function %s: cannot read the stream of table %s: %s", name, table, exc)
            return
        log.info("function %s: polling the stream of table %s", name, table)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._client.close()

    def _read_shards(self, position: str) -> None:
        """Start reading the shards not seen yet, from `position`."""
        description = self._client.describe_stream(StreamArn=self._arn)["StreamDescription"]
        for shard in description["Shards"]:
            if shard["ShardId"] not in self._iterators:
                self._iterators[shard["ShardId"]] = self._client.get_shard_iterator(
                    StreamArn=self._arn, ShardId=shard["ShardId"], ShardIteratorType=position
                )["ShardIterator"]

    def _run(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            while not self._stop.wait(POLL_INTERVAL):
                self._read_shards("TRIM_HORIZON")  # a shard opened since: all of it
                for shard_id, iterator in self._iterators.items():
                    if iterator is None:
                        continue
                    page = self._client.get_records(
                        ShardIterator=iterator, Limit=self.stream.batch_size
                    )
                    self._iterators[shard_id] = page.get("NextShardIterator")
                    if page["Records"]:
                        self._invoke([_record(r, self._arn) for r in page["Records"]])
        except (BotoCoreError, ClientError) as exc:
            if not self._stop.is_set():
                log.error(
                    "function %s: stopped reading the stream of table %s: %s",
                    self.pool.spec.name,
                    self.stream.table,
                    exc,
                )

    def _invoke(self, records: list[dict[str, Any]]) -> None:
        """Invoke the function with the batch until it succeeds, the retries are spent, or the
        poller stops (a stopped gateway leaves the batch unprocessed, as a disabled mapping)."""
        name, limit = self.pool.spec.name, self.stream.maximum_retry_attempts
        retries, delay = 0, POLL_INTERVAL
        while True:
            try:
                self.pool.invoke_blocking({"Records": records}, str(uuid.uuid4()))
                return
            except FunctionError as error:
                failure = f"{error.error_type}: {error.error_message}"
            if limit != -1 and retries >= limit:
                log.error(
                    "function %s: a batch of %d stream records failed (%s); discarded after "
                    "%d retries (MaximumRetryAttempts)",
                    name,
                    len(records),
                    failure,
                    retries,
                )
                return
            log.error(
                "function %s: a batch of %d stream records failed (%s); retrying in %.1f s%s",
                name,
                len(records),
                failure,
                delay,
                "" if limit != -1 else " (until it succeeds: set MaximumRetryAttempts to stop)",
            )
            if self._stop.wait(delay):
                return
            retries, delay = retries + 1, min(delay * 2, MAX_RETRY_DELAY)


def _record(record: Mapping[str, Any], stream_arn: str) -> dict[str, Any]:
    """A record as Lambda passes it: JSON (times as epoch seconds) with its stream's ARN."""
    dynamodb = dict(record.get("dynamodb") or {})
    created = dynamodb.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        dynamodb["ApproximateCreationDateTime"] = int(created.timestamp())
    return {**record, "dynamodb": dynamodb, "eventSourceARN": stream_arn}
