"""`wsgate connect URL`: a wscat-like client. Prints what arrives, sends what you type."""

from __future__ import annotations

import asyncio
import sys

import aiohttp
import click


@click.command()
@click.argument("url")
@click.option(
    "-x", "--execute", "messages", multiple=True, help="Send MSG, wait, exit (repeatable)."
)
@click.option(
    "-w",
    "--wait",
    default=2.0,
    show_default=True,
    help="After -x or the end of stdin: seconds to wait for replies.",
)
@click.option(
    "-H", "--header", "headers", multiple=True, help="Extra handshake header 'Name: value'."
)
@click.option("-s", "--subprotocol", "subprotocols", multiple=True, help="Offer a subprotocol.")
def connect(
    url: str,
    messages: tuple[str, ...],
    wait: float,
    headers: tuple[str, ...],
    subprotocols: tuple[str, ...],
) -> None:
    """Connect to URL, print each message received, and send each line typed on stdin.

    Received messages go to stdout, one per line; status lines go to stderr. With -x the
    messages are sent in order and the client exits after --wait seconds; so does it
    --wait seconds after stdin ends.
    """
    parsed: dict[str, str] = {}
    for header in headers:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            raise click.BadParameter(f"expected 'Name: value', got {header!r}", param_hint="-H")
        parsed[name.strip()] = value.strip()
    code = asyncio.run(_session(url, messages, wait, parsed, subprotocols))
    sys.exit(code)


async def _session(
    url: str,
    messages: tuple[str, ...],
    wait: float,
    headers: dict[str, str],
    subprotocols: tuple[str, ...],
) -> int:
    async with aiohttp.ClientSession() as session:
        try:
            ws = await session.ws_connect(
                url, headers=headers, protocols=subprotocols, max_msg_size=0, autoping=True
            )
        except aiohttp.WSServerHandshakeError as exc:
            click.echo(f"error: handshake refused: HTTP {exc.status} {exc.message}", err=True)
            return 1
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            click.echo(f"error: cannot connect to {url}: {exc}", err=True)
            return 1
        click.echo(f"connected to {url}" + (f" ({ws.protocol})" if ws.protocol else ""), err=True)
        printer = asyncio.create_task(_print_incoming(ws))
        if messages:
            for message in messages:
                await ws.send_str(message)
            done, _ = await asyncio.wait({printer}, timeout=wait)
        else:
            sender = asyncio.create_task(_send_stdin(ws))
            done, _ = await asyncio.wait({printer, sender}, return_when=asyncio.FIRST_COMPLETED)
            if sender in done:  # end of input: give the replies --wait seconds to arrive
                done, _ = await asyncio.wait({printer}, timeout=wait)
            sender.cancel()
        if not ws.closed:
            await ws.close()
        printer.cancel()
        code = ws.close_code
        if printer in done or code not in (None, 1000):
            click.echo(f"disconnected: close code {code}", err=True)
        return 0 if code in (None, 1000) or messages else 1


async def _print_incoming(ws: aiohttp.ClientWebSocketResponse) -> None:
    async for msg in ws:
        if msg.type is aiohttp.WSMsgType.TEXT:
            click.echo(msg.data)
        elif msg.type is aiohttp.WSMsgType.BINARY:
            click.echo(f"<binary {len(msg.data)} bytes: {msg.data[:32].hex()}...>")


async def _send_stdin(ws: aiohttp.ClientWebSocketResponse) -> None:
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:  # end of input: close politely
            return
        await ws.send_str(line.rstrip("\n"))
