"""wsgate: API Gateway-style WebSocket apps in Python, locally, self-hosted and on AWS."""

from wsgate.app import App, Route
from wsgate.connection_api import ConnectionInfo, connections
from wsgate.context import LambdaContext
from wsgate.core.events import Event
from wsgate.core.limits import Limits
from wsgate.core.routing import __file__ as _routing_file
from wsgate.exceptions import (
    ConfigError,
    GoneError,
    PayloadTooLargeError,
    StoreError,
    TargetError,
    WsgateError,
)

__version__ = "0.1.0"

# True when the hot path runs as C extensions compiled by mypyc (a wheel, see setup.py),
# False when it runs from its source (an editable install, or WSGATE_PURE=1).
COMPILED = not (_routing_file or "").endswith(".py")

__all__ = [
    "COMPILED",
    "App",
    "ConfigError",
    "ConnectionInfo",
    "Event",
    "GoneError",
    "LambdaContext",
    "Limits",
    "PayloadTooLargeError",
    "Route",
    "StoreError",
    "TargetError",
    "WsgateError",
    "__version__",
    "connections",
]
