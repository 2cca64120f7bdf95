"""A real browser for the HTML report: Debian's Chromium, headless, driven by Playwright.

Browser builds downloaded at run time are not reachable here, so Playwright is pointed at the
system's Chromium (`.ci/run` installs Debian's `chromium` package). Tests skip where there is
none, unless HARNESS_REQUIRE_BROWSER=1 (set by `.ci/run`) makes a missing browser a failure.

    python tests/browser.py results/mnist1d_mlp/report.html docs/images/report.png

writes the screenshot the README shows.
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
def open_page(html_file: Path) -> Iterator:
    """The page at 1280 x 900 CSS pixels, loaded with every image."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
            page.goto(Path(html_file).resolve().as_uri(), wait_until="load")
            yield page
        finally:
            browser.close()


if __name__ == "__main__":
    if len(sys.argv) != 3 or not chromium_path():
        sys.exit("usage: python tests/browser.py REPORT.html SCREENSHOT.png (needs Debian's chromium)")
    with open_page(Path(sys.argv[1])) as page:
        os.makedirs(Path(sys.argv[2]).parent, exist_ok=True)
        page.screenshot(path=sys.argv[2])
    print(f"wrote {sys.argv[2]}")
