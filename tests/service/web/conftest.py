"""Browser tests: the real app under uvicorn on a free port, driven by Playwright in Debian's Chromium.

Chromium comes from Debian (`apt-get install -y chromium`; `.ci/run` installs it); Playwright
never downloads a browser.  Screenshots of every page go to test-output/screenshots (ignored
by git); `FAIRSHARE_UPDATE_DOCS_SCREENSHOTS=1` also refreshes the ones in docs/screenshots.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from tests.service.conftest import seed

from fairshare.service.api.app import create_app
from fairshare.store.db import make_engine, upgrade

CHROMIUM = os.environ.get("FAIRSHARE_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).parents[3]
SHOTS = ROOT / "test-output" / "screenshots"
DOC_SHOTS = ROOT / "docs" / "screenshots"


@contextmanager
def served(db: Path, scenario_yaml: str | None = None, clock: Any = None) -> Iterator[dict[str, Any]]:
    """A lab seeded from `scenario_yaml` (default: the small lab) served on 127.0.0.1:<free port>;
    yields its URL and people's tokens."""
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    tokens = seed(engine) if scenario_yaml is None else seed(engine, scenario_yaml)
    app = create_app(engine=engine, secret="test-secret", **({"clock": clock} if clock else {}))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(url + "/healthz").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    yield {"url": url, "tokens": tokens}
    server.should_exit = True
    thread.join(timeout=10)
    engine.dispose()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The small lab served on 127.0.0.1:<free port>; yields its URL and people's tokens."""
    with served(tmp_path_factory.mktemp("web") / "lab.db") as s:
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"browser tests need Chromium at {CHROMIUM}: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield b
        b.close()


class Person:
    """One person's browser session (own cookies), signed in with their token."""

    def __init__(self, browser: Any, site: dict[str, Any], who: str, width: int = 1280):
        self.who, self.url = who, site["url"]
        height = 900 if width > 600 else 844  # a phone: 390 x 844
        self.context = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=1)
        self.page = self.context.new_page()
        self.token = site["tokens"][who]

    def sign_in(self) -> Person:
        self.page.goto(self.url + "/login")
        self.page.get_by_label("API token").fill(self.token)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url(self.url + "/")
        return self

    def go(self, path: str) -> Any:
        self.page.goto(self.url + path)
        return self.page

    def api(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(
            method, self.url + "/api/v1" + path, headers={"Authorization": f"Bearer {self.token}"}, **kw
        )

    def shot(self, name: str, full_page: bool = True, docs: bool = True) -> None:
        """A screenshot in test-output/screenshots; with FAIRSHARE_UPDATE_DOCS_SCREENSHOTS=1 also in
        docs/screenshots, reduced to a 64-colour palette to keep the checked-in PNGs small."""
        SHOTS.mkdir(parents=True, exist_ok=True)
        target = SHOTS / f"{name}.png"
        self.page.screenshot(path=str(target), full_page=full_page)
        if docs and os.environ.get("FAIRSHARE_UPDATE_DOCS_SCREENSHOTS"):
            from PIL import Image

            DOC_SHOTS.mkdir(parents=True, exist_ok=True)
            with Image.open(target) as img:
                img.convert("RGB").quantize(64).save(DOC_SHOTS / target.name, optimize=True)

    def close(self) -> None:
        self.context.close()
