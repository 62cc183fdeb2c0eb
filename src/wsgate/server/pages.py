"""The browser pages served beside the WebSocket: the demo's chat page and the connections
console. They are plain files in `wsgate/static` (no build step, nothing from a CDN) that
talk to the gateway as any client does: the demo page over a WebSocket, the console
through the `@connections` API. `server/http.py` answers:

    GET /                       the demo page, when the gateway serves the demo app
                                (for any other app, `/` answers 426 as before)
    GET [/{stage}]/@console     the connections console: the callers and `Host`s the
                                management API answers, as it is that API's front end
    GET /@static/{file}         their scripts and style sheet

The pages send nothing but the app's own messages and `@connections` calls, so they need
no endpoints of their own, and their Content-Security-Policy keeps them to this origin.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files

#: The files `/@static/{file}` serves, and their types.
_ASSETS = {
    "wsgate.css": "text/css; charset=utf-8",
    "demo.js": "text/javascript; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "sigv4.js": "text/javascript; charset=utf-8",
}
#: Where a page says the gateway's stage (its WebSocket URL and `@connections` path).
_STAGE_MARK = "{{stage}}"
_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    # Only this origin, its WebSocket included ('self' covers ws: and wss: of this host);
    # never framed, so no other site can lay the console's buttons under its own.
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True, slots=True)
class Pages:
    """Which pages a gateway serves: the console unless turned off (`--no-console`), the
    demo page only for the demo app (`wsgate serve` without a target)."""

    demo: bool = False
    console: bool = True


#: What any app gets: the console, no demo page.
DEFAULT_PAGES = Pages()


@dataclass(frozen=True, slots=True)
class Page:
    """One answer: `guarded` pages are answered only where the management API answers."""

    body: bytes
    content_type: str
    guarded: bool = False
    headers: dict[str, str] = field(default_factory=lambda: dict(_HEADERS))


def find_page(pages: Pages, path: str, stage: str) -> Page | None:
    """The page a GET of `path` asks for, or None if it is none of the pages served."""
    if pages.demo and path == "/":
        return Page(_with_stage("demo.html", stage), "text/html; charset=utf-8")
    if pages.console and path in ("/@console", f"/{stage}/@console"):
        return Page(_with_stage("console.html", stage), "text/html; charset=utf-8", guarded=True)
    if (pages.demo or pages.console) and path.startswith("/@static/"):
        name = path.removeprefix("/@static/")
        if name in _ASSETS:
            return Page(_read(name), _ASSETS[name])
    return None


def _with_stage(name: str, stage: str) -> bytes:
    return _read(name).replace(_STAGE_MARK.encode(), html.escape(stage).encode())


@cache
def _read(name: str) -> bytes:
    return (files("wsgate") / "static" / name).read_bytes()
