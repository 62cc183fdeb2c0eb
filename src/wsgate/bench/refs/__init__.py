"""Raw reference servers, each run as its own process: `python -m wsgate.bench.refs.NAME`.

They do the least a server can do for each scenario (no JSON parsing, no store: routing
by prefix, subscribers in a set), so they mark what the library itself costs.
"""

from __future__ import annotations

import argparse


def parse_port(description: str) -> int:
    """The `--port` every reference server takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    return int(parser.parse_args().port)
