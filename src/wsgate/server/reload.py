"""`wsgate serve --reload`: new code swapped into the running gateway, clients kept.

A change to a .py file under the app's folder loads the code again and swaps it in: the
sockets, connections and subscriptions stay; module-level state starts fresh, as on a new
Lambda container. Code that fails to load is logged and the code of before keeps running,
so a typo saved mid-edit never drops a client.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wsgate.server.gateway import Gateway

log = logging.getLogger("wsgate.reload")


@dataclass(frozen=True, slots=True)
class CodeReload:
    """What `--reload` watches, and how it brings the new code into a running gateway."""

    #: The app's folder: a change to a .py file in it (at any depth) reloads.
    folder: Path
    #: Loads the new code into the gateway and says what it loaded; raises if it cannot
    #: (the gateway is then untouched).
    swap: Callable[[Gateway], str]

    async def watch(self, gateway: Gateway, stop: asyncio.Event) -> None:
        """Swap new code in after each change, until `stop` is set."""
        import watchfiles

        # Its INFO line per batch of changes says in its words what the line below says.
        logging.getLogger("watchfiles").setLevel(logging.WARNING)
        async for changes in watchfiles.awatch(
            self.folder, watch_filter=watchfiles.PythonFilter(), stop_event=stop
        ):
            try:
                loaded = self.swap(gateway)
            except Exception as exc:
                log.error(
                    "%d file(s) changed but the new code did not load; still running the "
                    "code of before: %s",
                    len(changes),
                    exc,
                    exc_info=exc.__cause__ or exc,
                )
                continue
            print(
                f"wsgate: {len(changes)} file(s) changed, reloaded {loaded}; "
                f"{len(gateway.live)} connections kept",
                file=sys.stderr,
                flush=True,
            )
