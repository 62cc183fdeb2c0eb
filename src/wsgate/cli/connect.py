"""`wsgate connect URL`: a wscat-like client. Prints what arrives, sends what you type.

The session ends when the connection does, whoever closes it; the exit status says how it
ended. The HTTP library's errors become one line each, with what to check.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import ssl
import sys
from collections.abc import Awaitable
from dataclasses import dataclass
from http import HTTPStatus

import aiohttp
import click

from wsgate.cli.client_input import (
    COMMANDS_HELP,
    Close,
    Mistake,
    Ping,
    Send,
    StdinLines,
    parse_line,
    read_stdin,
)
from wsgate.cli.client_output import NORMAL_CLOSES, Console, describe_close

#: The exit status after Ctrl-C, as a shell reports a process stopped by SIGINT.
INTERRUPTED = 130


class ConnectError(click.ClickException):
    """The connection could not be opened: one line saying why and what to check."""

    exit_code = 1


@click.command(epilog=COMMANDS_HELP)
@click.argument("url")
@click.option(
    "-x",
    "--execute",
    "messages",
    metavar="MSG",
    multiple=True,
    help="Send MSG, wait, exit (repeatable).",
)
@click.option(
    "-w",
    "--wait",
    default=2.0,
    metavar="SECONDS",
    show_default=True,
    help="After -x or the end of piped stdin: seconds to wait for replies.",
)
@click.option(
    "-H",
    "--header",
    "headers",
    metavar="'NAME: VALUE'",
    multiple=True,
    help="Extra handshake header.",
)
@click.option(
    "-s",
    "--subprotocol",
    "subprotocols",
    metavar="NAME",
    multiple=True,
    help="Offer a subprotocol.",
)
def connect(
    url: str,
    messages: tuple[str, ...],
    wait: float,
    headers: tuple[str, ...],
    subprotocols: tuple[str, ...],
) -> None:
    """Connect to URL, print each message received, and send each line typed on stdin.

    URL without a scheme gets ws:// (127.0.0.1:8080/dev). Received messages go to stdout:
    on a terminal with the time, a direction (< received, > sent) and JSON indented;
    piped, exactly as they arrived, one per line. Status lines go to stderr. With -x the
    messages are sent in order and the client closes after --wait seconds; so does it
    --wait seconds after piped stdin ends (Ctrl-D on a terminal closes at once).

    The client exits when the connection closes: status 0 after a normal close (1000,
    1001) or one it made, 1 after any other close or when it cannot connect, 130 after
    Ctrl-C.
    """
    parsed: dict[str, str] = {}
    for header in headers:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise click.BadParameter(f"expected 'Name: value', got {header!r}", param_hint="-H")
        parsed[name.strip()] = value.strip()
    target = Target(with_scheme(url), parsed, subprotocols)
    try:
        code = asyncio.run(_session(target, Console.for_stdout(), messages, wait))
    except KeyboardInterrupt:  # Ctrl-C where the loop cannot catch it (Windows)
        code = INTERRUPTED
    except BrokenPipeError:  # stdout was closed (`| head -1`): stop without a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    sys.exit(code)


def with_scheme(url: str) -> str:
    """`ws://` in front of a URL without a scheme, as wscat does."""
    return url if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*://", url) else f"ws://{url}"


@dataclass(frozen=True, slots=True)
class Target:
    """Where to connect and what the handshake carries."""

    url: str
    headers: dict[str, str]
    subprotocols: tuple[str, ...]


@dataclass(slots=True)
class Ending:
    """How the session ended: the close, and whether this client chose it."""

    code: int | None = None
    reason: str = ""
    by_us: bool = False
    interrupted: bool = False

    def exit_status(self) -> int:
        if self.interrupted:
            return INTERRUPTED
        return 0 if self.by_us or self.code in NORMAL_CLOSES else 1


async def _session(target: Target, console: Console, messages: tuple[str, ...], wait: float) -> int:
    async with aiohttp.ClientSession(raise_for_status=_refuse_unless_upgraded) as http:
        ws = await _open(http, target)
        protocol = f" ({ws.protocol})" if ws.protocol else ""
        console.status(f"connected to {target.url}{protocol}")
        ending = Ending()
        stop = _interrupt(ending)
        receiving = asyncio.create_task(_receive(ws, console, ending))
        try:
            if messages:
                for message in messages:
                    await _send(ws, Send(message), console)
                await _first(receiving, stop, timeout=wait)
            else:
                lines = read_stdin(console)
                try:
                    await _type(ws, lines, console, ending, receiving, stop, wait)
                finally:
                    lines.close()
            if not receiving.done():  # this client closes
                ending.by_us = True
                if ending.code is None:
                    ending.code = 1000
                await ws.close(code=ending.code, message=ending.reason.encode())
        finally:
            receiving.cancel()
            with contextlib.suppress(NotImplementedError, RuntimeError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)
        if receiving.done() and not receiving.cancelled():
            receiving.result()  # printing failed (stdout closed?): that is no close
        verb = "closed" if ending.by_us else "disconnected"
        console.status(f"{verb}: {describe_close(ending.code, ending.reason)}")
        return ending.exit_status()


def _interrupt(ending: Ending) -> asyncio.Future[None]:
    """A future Ctrl-C completes, so the session closes politely instead of dying."""
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()

    def on_sigint() -> None:
        ending.interrupted = True
        if not stop.done():
            stop.set_result(None)

    with contextlib.suppress(NotImplementedError):  # Windows: KeyboardInterrupt instead
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    return stop


async def _first(*waiting: Awaitable[object], timeout: float | None = None) -> None:
    """Wait until one of `waiting` is done (or `timeout` has passed)."""
    futures = [asyncio.ensure_future(w) for w in waiting]
    await asyncio.wait(futures, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)


async def _type(
    ws: aiohttp.ClientWebSocketResponse,
    lines: StdinLines,
    console: Console,
    ending: Ending,
    receiving: asyncio.Task[None],
    stop: asyncio.Future[None],
    wait: float,
) -> None:
    """Act on each line of stdin until it ends, `/close`, Ctrl-C, or the server closes."""
    while True:
        line = asyncio.ensure_future(lines.next())
        await _first(line, receiving, stop)
        if not line.done():
            line.cancel()
            return
        text = line.result()
        if text is None:  # end of input: give the replies --wait seconds to arrive
            if not lines.interactive:
                await _first(receiving, stop, timeout=wait)
            return
        typed = parse_line(text)
        if isinstance(typed, Close):
            ending.code, ending.reason = typed.code, typed.reason
            return
        if isinstance(typed, Mistake):
            console.status(f"error: {typed.problem}")
        elif isinstance(typed, Ping):
            console.status(f"ping {_show(typed.data)}".rstrip())
            with contextlib.suppress(aiohttp.ClientConnectionError, ConnectionError):
                await ws.ping(typed.data)
        else:
            await _send(ws, typed, console)
        lines.handled()


async def _send(ws: aiohttp.ClientWebSocketResponse, message: Send, console: Console) -> None:
    with contextlib.suppress(aiohttp.ClientConnectionError, ConnectionError):
        # The server may have closed a moment ago: the receiving side reports that.
        await ws.send_str(message.text)
        console.sent(message.text)


async def _receive(ws: aiohttp.ClientWebSocketResponse, console: Console, ending: Ending) -> None:
    """Print what arrives and answer pings, until the connection closes.

    Returns when the server closes (its code and reason go in `ending`) or the connection
    drops (1006); keeps quiet when this client is the one closing.
    """
    while True:
        msg = await ws.receive()
        if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            console.received(msg.data)
        elif msg.type is aiohttp.WSMsgType.PING:
            await ws.pong(msg.data)
        elif msg.type is aiohttp.WSMsgType.PONG:
            console.status(f"pong {_show(msg.data)}".rstrip())
        elif msg.type is aiohttp.WSMsgType.CLOSING:  # ws.close() called here finishes it
            return
        elif msg.type is aiohttp.WSMsgType.CLOSE:
            ending.code, ending.reason = msg.data, msg.extra or ""
            return
        else:  # CLOSED or ERROR: the socket went away without a close frame
            ending.code = ws.close_code or 1006
            ending.reason = str(msg.data) if msg.type is aiohttp.WSMsgType.ERROR else ""
            return


def _show(data: bytes) -> str:
    return data.decode(errors="replace")


# -- opening, and what went wrong -------------------------------------------------------


class HandshakeRefused(Exception):
    """The server answered the upgrade request with a status other than 101."""

    def __init__(self, status: int, reason: str, body: bytes) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason
        self.body = body


async def _refuse_unless_upgraded(response: aiohttp.ClientResponse) -> None:
    """Keep the body of a refused handshake: it often says why (`{"message": ...}`)."""
    if response.status != 101:
        raise HandshakeRefused(response.status, response.reason or "", await response.read())


async def _open(http: aiohttp.ClientSession, target: Target) -> aiohttp.ClientWebSocketResponse:
    url = target.url
    if url.split("://", 1)[0].lower() not in ("ws", "wss", "http", "https"):
        raise ConnectError(f"{url} is not a WebSocket URL: use ws:// or wss://")
    try:
        return await http.ws_connect(
            url,
            headers=target.headers,
            protocols=target.subprotocols,
            max_msg_size=0,
            autoping=False,  # pings are answered in _receive, so pongs can be printed
        )
    except HandshakeRefused as refused:
        raise ConnectError(refusal_message(refused.status, refused.reason, refused.body)) from None
    except aiohttp.WSServerHandshakeError as exc:  # a 101 that is not a WebSocket upgrade
        raise ConnectError(
            f"{url} answered 101 but not as a WebSocket server: {exc.message}"
        ) from None
    except (aiohttp.InvalidURL, ValueError):
        raise ConnectError(f"{url} is not a valid URL") from None
    except aiohttp.ClientConnectorCertificateError as exc:
        raise ConnectError(
            f"cannot connect to {url}: the server's TLS certificate is not trusted "
            f"({exc.certificate_error})"
        ) from None
    except aiohttp.ClientConnectorError as exc:
        raise ConnectError(f"cannot connect to {url}: {_connect_problem(url, exc)}") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise ConnectError(f"cannot connect to {url}: {_tls_hint(url, exc) or exc}") from None
    except TimeoutError:
        raise ConnectError(f"cannot connect to {url}: no answer in time") from None


def _connect_problem(url: str, exc: aiohttp.ClientConnectorError) -> str:
    """Why the TCP (or TLS) connection failed, and what to check."""
    error = exc.os_error
    if isinstance(error, ConnectionRefusedError):
        return "connection refused — is `wsgate serve` running on that port?"
    if isinstance(error, socket.gaierror):
        return f"cannot resolve {exc.host}: is the host name right?"
    return _tls_hint(url, error) or error.strerror or str(error) or type(error).__name__


def _tls_hint(url: str, error: BaseException) -> str | None:
    """What a failed TLS handshake most often means: wss:// to a server without TLS."""
    if not url.lower().startswith(("wss://", "https://")):
        return None
    if isinstance(error, ssl.SSLError | ConnectionResetError | aiohttp.ServerDisconnectedError):
        plain = "ws://" + url.split("://", 1)[1]
        return f"the TLS handshake failed: `wsgate serve` speaks no TLS, try {plain}"
    return None


#: What a refused handshake most often means, by status.
REFUSAL_HINTS = {
    401: "the authorizer wants credentials: pass them with -H 'Name: value' or in the "
    "URL's query string",
    403: "wrong stage in the URL? (`wsgate serve` answers /STAGE: /dev unless --stage says "
    "otherwise), or $connect refused",
    502: "$connect failed or returned something that is not a response: see the server's log",
    504: "$connect took too long: see the server's log",
}


def refusal_message(status: int, reason: str, body: bytes) -> str:
    """One line for a handshake answered with `status`: the server's message and a hint."""
    reason = reason or _phrase(status)
    message = _body_message(body)
    hint = REFUSAL_HINTS.get(status)
    if status < 400:
        parts = [f"the server answered {status} {reason}, not a WebSocket upgrade"]
        hint = "is it a WebSocket URL?"
    else:
        parts = [f"the server refused the handshake ({status} {reason})"]
    if message and message.lower() != reason.lower():
        parts.append(message)
    if hint:
        parts.append(hint)
    return ": ".join(parts)


def _body_message(body: bytes) -> str | None:
    """The `message` of an API Gateway-style JSON error body."""
    try:
        value = json.loads(body)
    except ValueError:
        return None
    message = value.get("message") if isinstance(value, dict) else None
    return message if isinstance(message, str) else None


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
