"""The network edge: the only package that opens sockets."""

from wsgate.server.runner import ServeConfig, Server, run, serve

__all__ = ["ServeConfig", "Server", "run", "serve"]
