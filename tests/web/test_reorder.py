"""In the browser: dragging a queued task reorders the server's queue; cancel and clear act on it too."""

from __future__ import annotations

from playwright.async_api import expect

from .conftest import enqueue, log_in

ROW_IDS_JS = "() => [...document.querySelectorAll('#queued li[data-task-id]')].map(li => li.dataset.taskId)"


async def server_order(web_system, player_id: str) -> list[str]:
    queue = await web_system.call("queue.get", player_id)
    return [task["task_id"] for task in queue["queued"]]


async def test_drag_and_drop_changes_the_servers_order(page, web_system, player_id) -> None:
    await log_in(page, web_system, player_id)
    await page.click("#pause-toggle")  # nothing starts, so the three tasks stay queued
    await expect(page.locator("#pause-toggle")).to_have_text("Resume")
    await expect(page.locator("#paused-banner")).to_be_visible()
    rows = page.locator("#queued li[data-task-id]")
    for n, target in enumerate(["oak_log", "stone", "trout"], start=1):
        await enqueue(page, "harvesting", target, 2)
        await expect(rows).to_have_count(n)
    first = await page.evaluate(ROW_IDS_JS)
    assert first == await server_order(web_system, player_id)

    # the last row dropped on the top half of the first
    await rows.nth(2).drag_to(rows.nth(0), target_position={"x": 60, "y": 4})
    await expect(page.locator("#queue-notice")).to_have_text("Order saved.")
    moved = [first[2], first[0], first[1]]
    assert await server_order(web_system, player_id) == moved
    await page.wait_for_function(f"() => ({ROW_IDS_JS})().join() === {','.join(moved)!r}")

    # the buttons: one step down, then cancel, then clear
    await rows.nth(0).locator("button[title='Move down']").click()
    await expect(page.locator("#queue-notice")).to_have_text("Order saved.")
    assert await server_order(web_system, player_id) == [first[0], first[2], first[1]]
    await expect(rows.nth(0)).to_have_attribute("data-task-id", first[0])

    await rows.nth(0).locator("button.cancel").click()
    await expect(rows).to_have_count(2)
    assert await server_order(web_system, player_id) == [first[2], first[1]]

    await page.click("#clear")
    await expect(rows).to_have_count(0)
    assert await server_order(web_system, player_id) == []
    await expect(page.locator("#stats dd[data-stat='Cancelled']")).to_have_text("3")
