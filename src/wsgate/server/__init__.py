"""The network edge: the only package that opens sockets."""

from wsgate.server.runner import Server, run, serve

__all__ = ["Server", "run", "serve"]
