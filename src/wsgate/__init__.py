"""wsgate: API Gateway-style WebSocket apps in Python, locally, self-hosted and on AWS."""

from wsgate.app import App, Route
from wsgate.connection_api import ConnectionInfo, connections
from wsgate.context import LambdaContext
from wsgate.core.events import Event
from wsgate.core.limits import Limits
from wsgate.exceptions import (
    ConfigError,
    GoneError,
    PayloadTooLargeError,
    StoreError,
    TargetError,
    WsgateError,
)

__version__ = "0.1.0"

__all__ = [
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
