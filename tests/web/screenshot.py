"""Takes docs/web-client.png: the page on a running system with a realistic queue.

    .venv/bin/python -m tests.web.screenshot [docs/web-client.png]

Starts the same system as the browser tests (private servers, the engine, a
gateway process in dev mode) at real game speed, plays a little through the
page, and saves a screenshot once a few steps have completed.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from playwright.async_api import async_playwright, expect

from .conftest import chromium_path, enqueue, launch_chromium, log_in, running_system

PLAYER = "dev-player"
QUEUE = [  # activity, target, quantity, priority
    ("harvesting", "oak_log", 24, 0),
    ("harvesting", "stone", 30, 0),
    ("harvesting", "trout", 12, 0),
    ("combat", "rat", 10, 5),
    ("crafting", "plank", 2, 0),
]


async def main(out: Path) -> None:
    executable = chromium_path()
    if executable is None:
        raise SystemExit("chromium is missing: apt-get install -y chromium")
    with tempfile.TemporaryDirectory() as tmp:
        async with running_system(Path(tmp), time_scale=1.0) as system, async_playwright() as driver:
            context = await launch_chromium(driver, executable, Path(tmp) / "profile")
            page = context.pages[0] if context.pages else await context.new_page()
            await log_in(page, system, PLAYER)
            for activity, target, quantity, priority in QUEUE:
                await enqueue(page, activity, target, quantity, priority)
                await expect(page.locator("#enqueue-result")).to_contain_text("Queued", timeout=15_000)
            await enqueue(page, "crafting", "copper_bar", 1)  # refused: the form shows why
            await expect(page.locator("#enqueue-result")).to_contain_text("Refused", timeout=15_000)
            await page.wait_for_function(
                "() => Number(document.querySelector('#current .task')?.dataset.stepsDone) >= 3",
                timeout=60_000,
            )
            await page.wait_for_timeout(1200)  # mid-step, so the step bar is part-way
            out.parent.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(out), full_page=True)
            await context.close()
    print(f"saved {out}")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/web-client.png")))
