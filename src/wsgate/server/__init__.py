"""The network edge: the only package that opens sockets."""

from wsgate.server.modes import ServeConfig, run
from wsgate.server.runner import Server, serve

__all__ = ["ServeConfig", "Server", "run", "serve"]
