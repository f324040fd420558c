"""In the browser: a task goes from the form to the inventory; a refused one says why."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import expect

from questlog.services.contract.protocol import RpcError

from .conftest import enqueue, log_in

INVENTORY_JS = """() => Object.fromEntries([...document.querySelectorAll('#inventory li[data-item]')]
    .map(li => [li.dataset.item, Number(li.querySelector('.qty').textContent)]))"""


async def test_a_queued_task_shows_progress_then_lands_in_the_inventory(page, web_system, player_id) -> None:
    await log_in(page, web_system, player_id)
    await expect(page.locator("#inventory")).to_contain_text("starter kit arrives with your first command")

    await enqueue(page, "harvesting", "oak_log", 6)
    await expect(page.locator("#enqueue-result")).to_have_text("Queued 6 × Oak log.")
    current = page.locator("#current .task")
    await expect(current).to_contain_text("Oak log × 6")

    # while it runs: steps done on the bar, the next step and the end counted down
    running = await page.wait_for_function(
        """() => {
            const task = document.querySelector('#current .task');
            if (!task) return null;
            const done = Number(task.dataset.stepsDone);
            const eta = task.querySelector('.task-eta').textContent;
            if (done < 1 || done >= 6 || !eta.startsWith('in ')) return null;
            return {done, eta, bar: task.querySelector('[role=progressbar]').getAttribute('aria-valuenow'),
                    width: parseFloat(task.querySelector('.task-bar .fill').style.width),
                    step: task.querySelector('.step-eta').textContent,
                    queue: document.querySelector('#queue-eta').textContent};
        }"""
    )
    seen = await running.json_value()
    assert int(seen["bar"]) == seen["done"] and seen["width"] > 0
    assert seen["step"].startswith("in ") or seen["step"] == "due now"
    assert seen["queue"].startswith("· all done in ")

    await expect(page.locator("#current")).to_contain_text("Nothing running.")
    await expect(page.locator("#feed")).to_contain_text("Finished Oak log × 6.")
    await expect(page.locator("#inventory li[data-item='oak_log'] .qty")).to_have_text("10")  # 4 to start, 6 cut
    await expect(page.locator("#stats dd[data-stat='Completed']")).to_have_text("1")
    await expect(page.locator("#skills li[data-skill='harvesting']")).to_have_attribute("data-level", "2")
    server = await web_system.call("player.get", player_id)
    assert await page.evaluate(INVENTORY_JS) == server["inventory"]


async def test_a_refused_task_shows_the_rule_the_server_gives(page, web_system, player_id) -> None:
    await log_in(page, web_system, player_id)
    await enqueue(page, "crafting", "copper_bar", 2)
    with pytest.raises(RpcError) as refused:
        await web_system.call("queue.enqueue", player_id, activity="crafting", target="copper_bar", quantity=2)
    assert refused.value.code == -32010
    notice = page.locator("#enqueue-result")
    await expect(notice).to_have_text(f"Refused: {refused.value.data['detail']}")
    await expect(notice).to_have_class(re.compile(r"\brefused\b"))
    # the requirements said so before sending
    await expect(page.locator("#requirements .unmet").first).to_contain_text("Crafting level 2")
