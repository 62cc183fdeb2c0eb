"""`@app.authorizer`: registering the `$connect` authorizer (docs/compatibility.md §7)."""

from __future__ import annotations

from typing import Any

import pytest

from wsgate import App
from wsgate.core.authorizer import IdentitySource
from wsgate.exceptions import ConfigError


def test_the_decorator_registers_and_returns_the_function() -> None:
    """The handler comes back unchanged; its sources are parsed; sync or async is known."""
    app = App()

    @app.authorizer(identity_sources=["route.request.querystring.token"], simple=True)
    async def authorize(event: Any, context: Any) -> bool:
        return True

    authorizer = app.connect_authorizer
    assert authorizer is not None
    assert authorizer.route.handler is authorize and authorizer.route.is_async
    assert authorizer.identity_sources == (IdentitySource("querystring", "token"),)
    assert authorizer.simple
    assert "$connect" not in app.routes


def test_one_authorizer_per_app() -> None:
    app = App()
    app.add_authorizer(lambda e, c: True, identity_sources=[], simple=True)
    with pytest.raises(ConfigError, match="already has the authorizer"):
        app.add_authorizer(lambda e, c: True, identity_sources=[])


@pytest.mark.parametrize(
    ("sources", "match"),
    [
        ("route.request.header.Auth", "a list of strings"),
        (["header.Auth"], "bad identity source"),
    ],
)
def test_bad_identity_sources_are_refused(sources: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        App().add_authorizer(lambda e, c: True, identity_sources=sources)


def test_handlers_may_be_named_by_path() -> None:
    """As routes: `module.function`, resolved the way the Lambda runtime does."""
    app = App()
    app.add_authorizer("json.dumps", identity_sources=[])
    assert app.connect_authorizer is not None
    assert app.connect_authorizer.route.name == "dumps"
