"""The browser pages in a real headless Chromium: `wsgate serve` (no target) as a user runs
it, the demo page at `/` and the connections console at `/dev/@console`, driven through
their buttons by Playwright with the system's `chromium` (never a downloaded browser).

`python -m tests.e2e.test_pages` takes the screenshots in docs/ (demo.png, console.png).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import TIMEOUT, free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no chromium on PATH: the browser tests drive the system's "
        "(apt-get install chromium)",
    ),
]

#: How long the page may take to show what the server sent (milliseconds, for Playwright).
SHOWN = TIMEOUT * 1000


@contextmanager
def wsgate_serve(*args: str) -> Iterator[str]:
    """`wsgate serve ARGS` on a free port, in the background; yields its http:// root."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsgate", "serve", "--store", "memory://", "--port", str(port)]
        + list(args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 4 * TIMEOUT
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else proc.returncode
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "wsgate serve never listened"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


@contextmanager
def chromium(width: int = 1280, height: int = 800) -> Iterator[Callable[[str], Page]]:
    """A headless system Chromium; yields `open(url)`, a new page (its own context) each call."""
    assert CHROMIUM is not None
    with sync_playwright() as playwright:
        # --no-sandbox: CI containers run as root, where Chromium's sandbox cannot start.
        browser: Browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox"]
        )
        try:

            def open_page(url: str) -> Page:
                context = browser.new_context(viewport={"width": width, "height": height})
                page = context.new_page()
                page.set_default_timeout(SHOWN)
                page.goto(url)
                return page

            yield open_page
        finally:
            browser.close()


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with wsgate_serve() as url:
        yield url


@pytest.fixture
def open_page(base_url: str) -> Iterator[Callable[[str], Page]]:
    with chromium() as open_page:
        yield open_page


def open_demo(open_page: Callable[[str], Page], base_url: str, name: str) -> tuple[Page, str]:
    """A demo page, connected and named; its connection id."""
    page = open_page(base_url + "/")
    expect(page.locator("#status")).to_have_text("connected")
    expect(page.locator("#my-id")).to_have_text(re.compile(r"^[A-Za-z0-9_=-]{16}$"))
    page.fill("#name-input", name)
    page.click("#name-set")
    expect(page.locator("#messages")).to_contain_text(f"You are now “{name}”")
    return page, page.locator("#my-id").inner_text()


def join(page: Page, topic: str) -> None:
    page.fill("#topic-input", topic)
    page.click("#topic-join")
    expect(page.locator(f'#topics li[data-topic="{topic}"]')).to_be_visible()


def send(page: Page, text: str, *, to: str | None = None) -> None:
    """Send `text` to the selected topic, or directly to connection `to`."""
    if to is not None:
        page.click("#mode-direct")
        page.fill("#direct-id", to)
    else:
        page.click("#mode-topic")
    page.fill("#message-input", text)
    page.click("#send")


def test_a_topic_s_members_see_each_other_and_talk(
    open_page: Callable[[str], Page], base_url: str
) -> None:
    """Two pages in a topic see each other online, exchange messages; a third hears nothing."""
    ada, ada_id = open_demo(open_page, base_url, "Ada")
    bob, bob_id = open_demo(open_page, base_url, "Bob")
    eve, _ = open_demo(open_page, base_url, "Eve")
    join(ada, "lobby")
    join(eve, "elsewhere")
    join(bob, "lobby")

    # Bob's join answer lists Ada; Ada hears of Bob's join (presence).
    expect(bob.locator(f'#members li[data-id="{ada_id}"]')).to_contain_text("Ada")
    expect(bob.locator(f'#members li[data-id="{bob_id}"]')).to_contain_text("you")
    expect(ada.locator(f'#members li[data-id="{bob_id}"]')).to_contain_text("Bob")
    expect(ada.locator("#messages")).to_contain_text("Bob")
    expect(ada.locator("#messages")).to_contain_text("joined #lobby")

    send(ada, "hello from Ada")
    expect(bob.locator("#messages .message").last).to_contain_text("hello from Ada")
    expect(bob.locator("#messages .message").last).to_contain_text("#lobby · Ada")
    send(bob, "hi Ada")
    expect(ada.locator("#messages .message").last).to_contain_text("hi Ada")
    # Frames in and out are logged.
    expect(ada.locator("#log .frame.out").last).to_contain_text('"action":"publish"')
    expect(ada.locator("#log .frame.in").last).to_contain_text("hi Ada")

    time.sleep(0.3)  # long enough for a stray delivery to have arrived
    expect(eve.locator("#messages")).not_to_contain_text("hello from Ada")
    expect(eve.locator("#messages")).not_to_contain_text("hi Ada")

    # Leaving is announced too.
    bob.locator('#topics li[data-topic="lobby"] button').click()
    expect(ada.locator("#messages")).to_contain_text("left #lobby")
    expect(ada.locator(f'#members li[data-id="{bob_id}"]')).to_have_count(0)


def test_a_direct_message_reaches_only_its_target(
    open_page: Callable[[str], Page], base_url: str
) -> None:
    """A direct message to a connection id shows on that page only."""
    ada, _ = open_demo(open_page, base_url, "Ada")
    bob, _ = open_demo(open_page, base_url, "Bob")
    eve, eve_id = open_demo(open_page, base_url, "Eve")
    send(ada, "psst, Eve", to=eve_id)
    expect(eve.locator("#messages .message.direct").last).to_contain_text("psst, Eve")
    expect(eve.locator("#messages .message.direct").last).to_contain_text("direct from Ada")
    expect(ada.locator("#messages .message.mine").last).to_contain_text("psst, Eve")
    time.sleep(0.3)
    expect(bob.locator("#messages")).not_to_contain_text("psst")


def test_the_console_lists_sends_and_disconnects(
    open_page: Callable[[str], Page], base_url: str
) -> None:
    """The console lists the pages' connections with their topics, sends to one through
    PostToConnection, and disconnects one: that page shows it was closed."""
    ada, ada_id = open_demo(open_page, base_url, "Ada")
    bob, bob_id = open_demo(open_page, base_url, "Bob")
    join(ada, "console-room")
    console = open_page(base_url + "/dev/@console")
    ada_row = console.locator(f'tr[data-id="{ada_id}"]')
    bob_row = console.locator(f'tr[data-id="{bob_id}"]')
    expect(ada_row).to_contain_text("127.0.0.1")
    expect(ada_row.locator(".tag")).to_have_text(["console-room"])
    expect(bob_row).to_contain_text("none")

    ada_row.locator("input.send-text").fill("from the console")
    ada_row.locator("button.send").click()
    expect(ada_row.locator(".result")).to_have_text("sent")
    expect(ada.locator("#messages .message").last).to_contain_text("from the console")

    bob_row.locator("button.disconnect").click()
    expect(bob.locator("#status")).to_have_text("closed (1000 Connection Closed Normally)")
    expect(bob.locator("#banner")).to_be_visible()
    expect(bob_row).to_have_count(0)
    expect(ada_row).to_be_visible()
    expect(ada.locator("#status")).to_have_text("connected")


def test_the_console_pages_through_many_connections(open_page: Callable[[str], Page]) -> None:
    """With more connections than fit a page, the console shows 50 at a time with the total,
    and Next/Previous walk the pages (it describes only the rows it shows)."""
    from contextlib import ExitStack

    from tests.conftest import ws_connect

    with wsgate_serve() as url, ExitStack() as clients:
        for _ in range(53):
            clients.enter_context(ws_connect(url.replace("http", "ws", 1) + "/dev"))
        console = open_page(url + "/dev/@console")
        rows = console.locator("tbody tr")
        expect(console.locator("#count")).to_have_text("53 open")
        expect(rows).to_have_count(50)
        expect(console.locator("#page")).to_have_text("1-50 of 53")
        expect(console.locator("#previous")).to_be_hidden()
        first_page = set(rows.evaluate_all("rows => rows.map(r => r.dataset.id)"))
        console.locator("#next").click()
        expect(rows).to_have_count(3)
        expect(console.locator("#page")).to_have_text("51-53 of 53")
        expect(console.locator("#next")).to_be_hidden()
        second_page = set(rows.evaluate_all("rows => rows.map(r => r.dataset.id)"))
        assert not first_page & second_page
        console.locator("#previous").click()
        expect(rows).to_have_count(50)


def test_the_console_signs_its_calls_when_the_gateway_takes_signed_ones_only(
    open_page: Callable[[str], Page], tmp_path: Path
) -> None:
    """With `--access-keys`, the console's unsigned call gets the 403 and the page asks for a
    key; a wrong secret is refused and said so; the right one signs every call (SigV4, as
    botocore checks it): the list with its query, a send with a body, a disconnect."""
    keys = tmp_path / "keys.txt"
    keys.write_text("AKIDCONSOLE:console-secret\n")
    with wsgate_serve("--access-keys", str(keys)) as url:
        ada, ada_id = open_demo(open_page, url, "Ada")
        bob, bob_id = open_demo(open_page, url, "Bob")
        console = open_page(url + "/dev/@console")
        expect(console.locator("#keys")).to_be_visible()
        expect(console.locator("#keys-why")).to_contain_text("signed calls only")
        expect(console.locator("tbody tr")).to_have_count(0)

        console.fill("#key-id", "AKIDCONSOLE")
        console.fill("#key-secret", "not-the-secret")
        console.click("#keys button[type=submit]")
        expect(console.locator("#keys-why")).to_contain_text("That key was refused")

        console.fill("#key-id", "AKIDCONSOLE")
        console.fill("#key-secret", "console-secret")
        console.click("#keys button[type=submit]")
        expect(console.locator("#keys")).to_be_hidden()
        ada_row = console.locator(f'tr[data-id="{ada_id}"]')
        bob_row = console.locator(f'tr[data-id="{bob_id}"]')
        expect(ada_row).to_contain_text("127.0.0.1")
        ada_row.locator("input.send-text").fill("signed, from the console")
        ada_row.locator("button.send").click()
        expect(ada_row.locator(".result")).to_have_text("sent")
        expect(ada.locator("#messages .message").last).to_contain_text("signed, from the console")
        bob_row.locator("button.disconnect").click()
        expect(bob.locator("#status")).to_have_text("closed (1000 Connection Closed Normally)")
        expect(bob_row).to_have_count(0)


def test_the_console_is_only_for_the_management_api_s_hosts(base_url: str) -> None:
    """Another `Host` (a DNS-rebinding page) gets the management API's 403, not the console."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        base_url + "/dev/@console", headers={"Host": "evil.example:8080"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=TIMEOUT)
    refused.value.close()
    assert refused.value.code == 403


#: A page's round trip: connect, send `text`, wait for its echo; what the browser saw.
ECHO_IN_THE_PAGE = """async ([url, text]) => {
    const ws = new WebSocket(url);
    await new Promise((opened, failed) => { ws.onopen = opened; ws.onerror = failed; });
    const echoed = new Promise((received) => { ws.onmessage = (e) => received(e.data); });
    ws.send(text);
    const data = await echoed;
    ws.close();
    return { extensions: ws.extensions, same: data === text };
}"""


@pytest.mark.parametrize("compression", [True, False])
def test_chromium_negotiates_compression_unless_it_is_off(
    open_page: Callable[[str], Page], compression: bool
) -> None:
    """Chromium offers permessage-deflate: the demo's echo of a 20 KB message comes back
    whole, compressed both ways; with --no-compression the same works uncompressed."""
    args = () if compression else ("--no-compression",)
    with wsgate_serve(*args) as url:
        page = open_page(url + "/")
        text = "é, a browser's message; " * 800
        ws_url = url.replace("http://", "ws://") + "/dev"
        seen = page.evaluate(ECHO_IN_THE_PAGE, [ws_url, text])
    assert seen["same"]
    assert seen["extensions"] == (
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
        if compression
        else ""
    )


def take_screenshots() -> None:
    """docs/demo.png and docs/console.png: two pages chatting, and the console beside them."""
    with wsgate_serve() as url, chromium(1360, 820) as open_page:
        ada, ada_id = open_demo(open_page, url, "Ada")
        bob, bob_id = open_demo(open_page, url, "Bob")
        grace, _ = open_demo(open_page, url, "Grace")
        for page in (ada, bob, grace):
            join(page, "lobby")
        join(grace, "news")
        grace.locator('#topics li[data-topic="lobby"]').click()
        expect(ada.locator("#members li")).to_have_count(3)
        send(bob, "Hi all! Is the deploy done?")
        send(ada, "Yes, it went out at 10:42.")
        send(grace, "Thanks, Ada.")
        send(bob, "Ada, can you look at my PR later?", to=ada_id)
        expect(ada.locator("#messages .message.direct")).to_have_count(1)
        ada.locator(f'#members li[data-id="{bob_id}"]').click()
        ada.fill("#message-input", "Sure, after lunch.")
        ada.screenshot(path=ROOT / "docs" / "demo.png")
        console = open_page(url + "/dev/@console")
        expect(console.locator("tbody tr")).to_have_count(3)
        console.screenshot(path=ROOT / "docs" / "console.png")


if __name__ == "__main__":
    take_screenshots()
