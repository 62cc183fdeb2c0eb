"""`wsgate connections`: list the live connections of a running gateway."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import click


def _get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        if exc.code == 410:
            return None
        detail = exc.read().decode(errors="replace")
        raise click.ClickException(f"GET {url} answered {exc.code}: {detail}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise click.ClickException(f"cannot reach {url}: {exc}") from exc


@click.command()
@click.option(
    "--url",
    default="http://127.0.0.1:8080/dev",
    show_default=True,
    help="The gateway's management endpoint (what boto3 takes as endpoint_url).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def connections(url: str, as_json: bool) -> None:
    """List live connections through the @connections API."""
    base = url.rstrip("/") + "/@connections"
    ids = _get(base)["connections"]
    rows = []
    for connection_id in ids:
        info = _get(f"{base}/{urllib.parse.quote(connection_id, safe='')}")
        if info is not None:  # closed between the two requests
            rows.append({"connectionId": connection_id, **info})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no connections")
        return
    click.echo(f"{'CONNECTION ID':18} {'CONNECTED AT':26} {'LAST ACTIVE AT':26} SOURCE IP")
    for row in rows:
        click.echo(
            f"{row['connectionId']:18} {row['connectedAt']:26} {row['lastActiveAt']:26} "
            f"{row['identity']['sourceIp']}"
        )
