"""The Lambda-like `context`: the attributes Python Lambda handlers read, and their types."""

from __future__ import annotations

import re
import time

from wsgate import LambdaContext


def test_defaults_are_those_of_a_python_lambda() -> None:
    """Names and types as in the Python runtime: memory is a string, ARNs are built."""
    context = LambdaContext("chat-default", time.monotonic() + 29)
    assert context.memory_limit_in_mb == "128"
    assert context.function_version == "$LATEST"
    assert context.invoked_function_arn == (
        "arn:aws:lambda:us-east-1:000000000000:function:chat-default"
    )
    assert context.log_group_name == "/aws/lambda/chat-default"
    assert context.client_context is None and context.identity.cognito_identity_id is None
    assert 28_000 < context.get_remaining_time_in_millis() <= 29_000


def test_settings_are_per_context() -> None:
    """A test may give one context other settings (or set them) without touching others."""
    custom = LambdaContext("f", 0.0, memory_limit_in_mb="1024", region="eu-west-1")
    custom.function_version = "7"
    plain = LambdaContext("f", 0.0)
    assert (custom.memory_limit_in_mb, custom.region, custom.function_version) == (
        "1024",
        "eu-west-1",
        "7",
    )
    assert custom.invoked_function_arn.startswith("arn:aws:lambda:eu-west-1:")
    assert (plain.memory_limit_in_mb, plain.region, plain.function_version) == (
        "128",
        "us-east-1",
        "$LATEST",
    )
    assert plain.get_remaining_time_in_millis() == 0  # past its deadline


def test_request_id_is_one_uuid_per_context() -> None:
    """`aws_request_id` is a UUID, stable for one invocation, new for the next; repr shows it."""
    first, second = LambdaContext("f", 0.0), LambdaContext("f", 0.0)
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", first.aws_request_id
    )
    assert first.aws_request_id == first.aws_request_id != second.aws_request_id
    assert first.aws_request_id in repr(first) and "function_name='f'" in repr(first)
