"""Headless Chromium for docs/side-by-side.html: the system browser, driven by playwright's Python client.

Playwright is pointed at Debian's `chromium` (no browser download: the network reaches only package
registries) and imported inside the functions, like Pygments elsewhere in common/.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

INSTALL = "apt-get install -y chromium && pip install -c constraints.txt playwright"
SCREENSHOT_SECTION = "step"  # the three forward passes, gradients and updates on the same rows
WIDE = {"width": 1400, "height": 900}


def find_chromium() -> str | None:
    """Debian's chromium, on PATH or at /usr/bin/chromium."""
    for candidate in ("chromium", "chromium-browser"):
        found = shutil.which(candidate)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def missing() -> str | None:
    """Why the browser cannot run here, with the command that fixes it; None if it can."""
    if find_chromium() is None:
        return f"no Chromium: {INSTALL}"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return f"no playwright: {INSTALL}"
    return None


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium browser (playwright's Browser), closed on exit."""
    from playwright.sync_api import sync_playwright

    executable = find_chromium()
    if executable is None:
        raise RuntimeError(f"no Chromium: {INSTALL}")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def screenshot_section(browser: Any, page_path: Path, out: Path, section: str = SCREENSHOT_SECTION) -> None:
    """A PNG of one section of the page at 1,400 px wide, light scheme, for the README."""
    page = browser.new_page(viewport=WIDE, color_scheme="light", device_scale_factor=1)
    page.goto(page_path.resolve().as_uri())
    # A clip of the full page, not an element shot: scrolling to the element would move the sticky headings.
    box = page.locator(f"section#{section}").bounding_box()
    page.screenshot(path=str(out), full_page=True, clip=box)
    page.close()
