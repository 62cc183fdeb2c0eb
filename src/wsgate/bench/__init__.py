"""`wsgate bench`: measure wsgate against reference servers, on 127.0.0.1 only.

Every server under test runs in its own subprocess, so its CPU time and resident memory
can be read from /proc per scenario; the load generator runs in the benchmark process and
reports its own CPU time, so a reader can tell whether it was the bottleneck.

    python -m wsgate.bench --scenarios echo,fanout --servers wsgate,picows --repeat 3

See docs/benchmarks.md for the method and the figures.
"""

from __future__ import annotations

SCENARIOS = ("echo", "fanout", "connect", "memory")
#: The frameworks a user would pick instead to self-host the same app in Python
#: (installed by the benchmark on first use, see wsgate.bench.peers).
PEERS = ("starlette", "starlette-wsproto", "socketio", "channels")
SERVERS = (
    "wsgate",
    "wsgate-2w",
    "wsgate-sync",
    "wsgate-redis",
    "wsgate-3n",
    "websockets",
    "picows",
    *PEERS,
    "serverless-offline",
)

__all__ = ["PEERS", "SCENARIOS", "SERVERS"]
