"""In the browser: the gateway dies mid-task and comes back; the page recovers by itself."""

from __future__ import annotations

from playwright.async_api import expect

from ..watch import until
from .conftest import enqueue, log_in

STEPS_DONE_JS = """() => { const t = document.querySelector('#current .task');
    return t && Number(t.dataset.stepsDone) >= 1; }"""
INVENTORY_JS = """() => Object.fromEntries([...document.querySelectorAll('#inventory li[data-item]')]
    .map(li => [li.dataset.item, Number(li.querySelector('.qty').textContent)]))"""
SAME_INVENTORY_JS = f"""expected => {{
    const shown = ({INVENTORY_JS})();
    const keys = Object.keys(expected);
    return keys.length === Object.keys(shown).length && keys.every(k => shown[k] === expected[k]);
}}"""
QUEUED_JS = "() => [...document.querySelectorAll('#queued li[data-task-id]')].map(li => li.dataset.taskId)"


def rewards_caught_up(log) -> bool:
    """Every completed step has its reward: nothing more happens while the queue is paused."""
    steps = {(e.event.task_id, e.event.step) for e in log if e.type == "task.step_completed"}
    rewarded = {(e.event.task_id, e.event.step) for e in log if e.type == "reward.granted"}
    return log[-1].type != "task.started" and steps <= rewarded


async def test_the_page_recovers_on_its_own_and_shows_the_servers_state(page, web_system, player_id) -> None:
    await log_in(page, web_system, player_id)
    await page.evaluate("window.sameDocument = true")  # gone if the page ever reloads
    await enqueue(page, "harvesting", "oak_log", 40)
    await expect(page.locator("#enqueue-result")).to_have_text("Queued 40 × Oak log.")
    await page.wait_for_function(STEPS_DONE_JS)
    seen = int(await page.get_attribute("#version", "data-version"))

    await web_system.kill_gateway()
    status = page.locator("#status")
    await expect(status).to_have_attribute("data-state", "reconnecting")

    # a command made while disconnected waits in localStorage
    await enqueue(page, "harvesting", "stone", 2)
    await expect(page.locator("#enqueue-result")).to_contain_text("Offline")
    await expect(page.locator("#outbox-count")).to_have_attribute("data-size", "1")
    kept = await page.evaluate(f"JSON.parse(localStorage.getItem('questlog.outbox.{player_id}'))")
    assert [c["method"] for c in kept] == ["queue.enqueue"] and kept[0]["params"]["command_id"]

    # the task runs on while the page is away
    await until(web_system.nc, web_system.wiring.store, player_id, lambda log: len(log) >= seen + 3)
    await web_system.start_gateway()

    await expect(status).to_have_attribute("data-state", "recovered", timeout=30_000)
    missed = int(await status.get_attribute("data-missed"))
    assert missed >= 3
    await expect(status).to_contain_text(f"recovered {missed} missed events")
    await expect(page.locator("#outbox-count")).to_have_attribute("data-size", "0")
    await expect(page.locator("#feed")).to_contain_text("Sent queue.enqueue made while offline.")

    # freeze the server, then the page shows exactly what it holds
    await web_system.call("queue.pause", player_id, command_id="test-pause")
    await until(web_system.nc, web_system.wiring.store, player_id, rewards_caught_up)
    queue = await web_system.call("queue.get", player_id)
    player = await web_system.call("player.get", player_id)
    assert queue["version"] == player["version"]
    assert [t["target"] for t in queue["queued"]] == ["stone"]
    await expect(page.locator("#version")).to_have_attribute("data-version", str(queue["version"]))
    await expect(page.locator("#paused-banner")).to_be_visible()
    await expect(page.locator("#current .task")).to_have_attribute(
        "data-steps-done", str(queue["current"]["steps_done"])
    )
    assert await page.evaluate(QUEUED_JS) == [t["task_id"] for t in queue["queued"]]
    await page.wait_for_function(SAME_INVENTORY_JS, arg=player["inventory"])
    assert await page.evaluate("window.sameDocument") is True
