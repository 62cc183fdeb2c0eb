"""A Lambda-like `context` object for handlers (awslambdaric's `LambdaContext` attributes)."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import TypedDict, Unpack

_log = logging.getLogger("wsgate.handler")


@dataclass(frozen=True, slots=True)
class CognitoIdentity:
    cognito_identity_id: str | None = None
    cognito_identity_pool_id: str | None = None


_NO_IDENTITY = CognitoIdentity()


class ContextSettings(TypedDict, total=False):
    """What a `LambdaContext` may be given besides its function name and deadline."""

    memory_limit_in_mb: str
    function_version: str
    region: str
    account_id: str
    identity: CognitoIdentity


class LambdaContext:
    """What a Python Lambda handler reads from `context`, with the same names and types.

    `memory_limit_in_mb` is a string, as in the Python runtime. The deadline is the
    gateway's handler timeout, so `get_remaining_time_in_millis()` counts down to it.
    One is made per invocation, so the settings that rarely vary are class attributes,
    which a context given other `settings` (a test's, say) shadows with its own.
    """

    __slots__ = ("__dict__", "_request_id", "deadline", "function_name")

    memory_limit_in_mb = "128"
    function_version = "$LATEST"
    region = "us-east-1"
    account_id = "000000000000"
    identity = _NO_IDENTITY
    client_context = None
    tenant_id = None

    def __init__(
        self, function_name: str, deadline: float, **settings: Unpack[ContextSettings]
    ) -> None:
        self.function_name = function_name
        self.deadline = deadline  # a time.monotonic() value
        self._request_id: str | None = None
        if settings:
            self.__dict__.update(settings)

    def __repr__(self) -> str:
        return (
            f"LambdaContext(function_name={self.function_name!r},"
            f" function_version={self.function_version!r},"
            f" aws_request_id={self.aws_request_id!r})"
        )

    @property
    def aws_request_id(self) -> str:
        """A UUID4 per invocation, made on first read: most handlers never read it."""
        if self._request_id is None:
            self._request_id = str(uuid.uuid4())
        return self._request_id

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        day = time.strftime("%Y/%m/%d", time.gmtime())
        return f"{day}/[{self.function_version}]{self.aws_request_id.replace('-', '')}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))

    def log(self, message: str) -> None:
        _log.info("%s %s", self.aws_request_id, message.rstrip("\n"))
