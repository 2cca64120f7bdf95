"""A real browser for the HTML report: Debian's Chromium, headless, driven by Playwright.

Browser builds downloaded at run time are not reachable here, so Playwright is pointed at the
system's Chromium (`.ci/run` installs Debian's `chromium` package). Tests skip where there is
none, unless HARNESS_REQUIRE_BROWSER=1 (set by `.ci/run`) makes a missing browser a failure.

    python tests/browser.py results/mnist1d_mlp/report.html docs/images/report.png

writes the screenshot the README shows (at 1280 x 900; `make screenshot` runs it on a fresh report).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

WIDTH, HEIGHT = 1280, 900
# No network here: without these, Chromium keeps trying to reach Google's hosts at every start.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextlib.contextmanager
def launch() -> Iterator:
    """One headless Chromium for several pages (each launch takes seconds)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def load(browser, html_file: Path, width: int = WIDTH, height: int = HEIGHT, phone: bool = False):
    """The page at width x height CSS pixels, loaded with every image. phone: as a phone's browser shows it
    (a touch screen of 3 device pixels per CSS pixel that lays a page out 980 px wide and shrinks it, unless
    the page's viewport meta says otherwise)."""
    context = browser.new_context(viewport={"width": width, "height": height}, is_mobile=phone, has_touch=phone,
                                  device_scale_factor=3 if phone else 1)
    page = context.new_page()
    page.goto(Path(html_file).resolve().as_uri(), wait_until="load")
    return page


@contextlib.contextmanager
def open_page(html_file: Path, width: int = WIDTH, height: int = HEIGHT) -> Iterator:
    """The page at width x height (1280 x 900) CSS pixels, loaded with every image."""
    with launch() as browser:
        yield load(browser, html_file, width, height)


if __name__ == "__main__":
    if len(sys.argv) != 3 or not chromium_path():
        sys.exit("usage: python tests/browser.py REPORT.html SCREENSHOT.png (needs Debian's chromium)")
    with open_page(Path(sys.argv[1])) as page:
        os.makedirs(Path(sys.argv[2]).parent, exist_ok=True)
        page.screenshot(path=sys.argv[2])
    print(f"wrote {sys.argv[2]}")
