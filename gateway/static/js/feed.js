// The feed: what happened, newest first, in words; rare drops and level-ups stand out.
// Step events are left out (the progress bar shows them); their rewards are not.

import { $, h } from "./dom.js";
import { capitalise, clock, itemTitle, items, targetTitle } from "./format.js";

const MAX_ENTRIES = 200;

export class Feed {
  constructor(root, store) {
    this.root = root;
    this.store = store;
    this.list = $("#feed", root);
    this.tasks = new Map(); // task_id -> {activity, target}, to name tasks in later events
    store.addEventListener("change", ({ detail }) => {
      if (detail.what !== "queue") return;
      const { current, queued } = store.queue;
      for (const task of [current, ...queued]) if (task) this.tasks.set(task.task_id, task);
    });
  }

  event(event) {
    if (event.type === "task.enqueued") this.tasks.set(event.data.task.task_id, event.data.task);
    const line = describe(event, this.store.catalog, (id) => this.taskName(id));
    if (line) this.add(line.text, line.kind, event.at, event.version);
  }

  // a line of the page's own (sync results, connection news)
  note(text, kind = "info") {
    this.add(text, kind, new Date().toISOString());
  }

  add(text, kind, at, version) {
    const entry = h(
      "li",
      { class: kind, dataset: { version: version ?? "" } },
      h("time", { datetime: at }, clock(at)),
      kind === "rare" ? h("span", { class: "star", "aria-hidden": "true" }, "★") : null,
      h("span", { class: "text" }, text),
    );
    this.list.prepend(entry);
    while (this.list.children.length > MAX_ENTRIES) this.list.lastElementChild.remove();
  }

  taskName(taskId) {
    const task = this.tasks.get(taskId);
    if (!task) return "a task";
    return `${targetTitle(this.store.catalog, task.activity, task.target)} × ${task.quantity}`;
  }
}

// {text, kind} for an event, or null to leave it out
export function describe(event, catalog, taskName) {
  const d = event.data;
  switch (event.type) {
    case "player.created":
      return { text: `Welcome! Starter kit: ${items(catalog, d.inventory)}.`, kind: "good" };
    case "player.leveled_up":
      return { text: `Level up! ${capitalise(d.skill)} is now level ${d.level}.`, kind: "levelup" };
    case "task.enqueued":
      return { text: `Queued ${taskName(d.task.task_id)}.`, kind: "info" };
    case "task.cancelled":
      return { text: `Cancelled ${taskName(d.task_id)} after ${d.steps_done} steps${refund(catalog, d.refunded)}.`, kind: "info" };
    case "queue.reordered":
      return { text: "Queue reordered.", kind: "info" };
    case "queue.cleared":
      return { text: `Queue cleared (${d.task_ids.length} tasks)${refund(catalog, d.refunded)}.`, kind: "info" };
    case "queue.paused":
      return { text: `Queue paused${d.by && d.by !== "player" ? ` by ${d.by}` : ""}: ${d.reason}`, kind: d.by === "system" ? "bad" : "info" };
    case "queue.resumed":
      return { text: "Queue resumed.", kind: "info" };
    case "queue.configured":
      return { text: `Queue set to ${d.priority_mode}, at most ${d.max_size} tasks.`, kind: "info" };
    case "task.started":
      return { text: `Started ${taskName(d.task_id)}${d.attempt > 1 ? ` (attempt ${d.attempt})` : ""}.`, kind: "info" };
    case "task.step_completed":
      return null;
    case "reward.granted":
      return reward(d, catalog, taskName);
    case "task.completed":
      return { text: `Finished ${taskName(d.task_id)}.`, kind: "good" };
    case "task.failed":
      return { text: `${taskName(d.task_id)} failed: ${d.reason}`, kind: "bad" };
    case "task.retry_scheduled":
      return { text: `${capitalise(d.reason)}; trying again at ${clock(d.retry_at)} (attempt ${d.attempt}).`, kind: "bad" };
    case "equipment.equipped":
      return { text: `Equipped ${itemTitle(catalog, d.item)} (${d.slot}).`, kind: "info" };
    case "admin.granted":
      return { text: `An admin granted ${[items(catalog, d.items), xpText(d.xp)].filter(Boolean).join(", ")}: ${d.reason}`, kind: "good" };
    default:
      return { text: event.type, kind: "info" };
  }
}

function reward(d, catalog, taskName) {
  if (d.rare?.length) {
    const found = d.rare.map((item) => itemTitle(catalog, item)).join(", ");
    return { text: `Rare drop: ${found}! (${[items(catalog, d.items), xpText(d.xp)].filter(Boolean).join(", ")})`, kind: "rare" };
  }
  const gained = [items(catalog, d.items), xpText(d.xp)].filter(Boolean).join(", ");
  const quality = d.quality ? ` (${d.quality})` : "";
  if (d.success === false) return { text: `Step ${d.step} of ${taskName(d.task_id)} failed${gained ? `; ${gained}` : ""}.`, kind: "bad" };
  return { text: `Got ${gained || "nothing"}${quality}.`, kind: "reward" };
}

function xpText(xp) {
  return Object.entries(xp ?? {})
    .map(([skill, n]) => `${n} ${skill} xp`)
    .join(", ");
}

function refund(catalog, refunded) {
  const back = items(catalog, refunded);
  return back ? `; refunded ${back}` : "";
}
