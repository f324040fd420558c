// The queue: the current task with live progress, the tasks up next (drag to reorder),
// pause/resume, clear, cancel, and the queue's statistics.
//
// Rows are rebuilt when the server's queue changes; between reads a ticker
// moves the progress bars and the countdowns from the tasks' ETAs.

import { $, h, replaceChildren } from "./dom.js";
import { refusal } from "./enqueue-form.js";
import { capitalise, duration, eta, percent, targetTitle } from "./format.js";
import { ids, reorderable } from "./drag-reorder.js";
import { queueEta, taskProgress } from "./progress.js";

const TICK_MS = 200;

export class QueueView {
  constructor(root, store, commands) {
    this.root = root;
    this.store = store;
    this.commands = commands;
    this.list = $("#queued", root);
    this.drag = reorderable(this.list, {
      onReorder: (order) => this.reorder(order),
      onCancel: () => this.restore(),
    });
    $("#pause-toggle", root).addEventListener("click", () => this.togglePause());
    $("#clear", root).addEventListener("click", () => this.command("queue.clear", {}, "Queue cleared."));
    store.addEventListener("change", ({ detail }) => {
      if (detail.what === "queue" || detail.what === "catalog") this.render();
    });
    store.addEventListener("progress", () => this.renderCurrent());
    setInterval(() => this.tick(), TICK_MS);
  }

  render() {
    const queue = this.store.queue;
    if (!queue || !this.store.catalog) return;
    if (this.drag.dragging) return; // never pull a row from under the pointer: dragend renders
    const pause = $("#pause-toggle", this.root);
    pause.textContent = queue.paused ? "Resume" : "Pause";
    pause.dataset.paused = String(queue.paused);
    const banner = $("#paused-banner", this.root);
    banner.hidden = !queue.paused;
    banner.textContent = queue.paused ? `Paused${queue.pause_reason ? `: ${queue.pause_reason}` : ""}` : "";
    $("#clear", this.root).disabled = queue.queued.length === 0;
    this.renderCurrent();
    const key = JSON.stringify(queue.queued.map((t) => [t.task_id, t.quantity, t.priority, t.eta]));
    if (key !== this.list.dataset.key) {
      // rebuilt only when it changed, so a button is not swapped out under a click
      this.list.dataset.key = key;
      replaceChildren(
        this.list,
        queue.queued.map((task, i) => this.queuedRow(task, i, queue.queued.length)),
      );
    }
    $("#queued-empty", this.root).hidden = queue.queued.length > 0;
    this.renderStats(queue.stats);
    this.tick();
  }

  renderCurrent() {
    const task = this.store.queue?.current;
    const box = $("#current", this.root);
    if (!task) {
      replaceChildren(box, h("p", { class: "muted" }, "Nothing running."));
      return;
    }
    const shown = box.querySelector(".task");
    if (shown?.dataset.taskId === task.task_id) {
      this.updateCurrent(shown, task); // in place: the Cancel button stays under the pointer
      return;
    }
    const title = targetTitle(this.store.catalog, task.activity, task.target);
    replaceChildren(
      box,
      h(
        "div",
        { class: "task current", dataset: { taskId: task.task_id } },
        h(
          "div",
          { class: "task-head" },
          h("strong", {}, `${title} × ${task.quantity}`),
          h("span", { class: "muted meta" }),
          h("button", { class: "cancel", title: "Cancel this task", onclick: () => this.cancel(task) }, "Cancel"),
        ),
        h(
          "div",
          {
            class: "bar task-bar",
            role: "progressbar",
            "aria-label": "task progress",
            "aria-valuemin": 0,
            "aria-valuemax": task.quantity,
          },
          h("span", { class: "fill" }),
          h("span", { class: "label" }),
        ),
        h("div", { class: "bar step-bar", "aria-label": "step progress" }, h("span", { class: "fill" })),
        h(
          "p",
          { class: "etas" },
          "Next step ",
          h("span", { class: "step-eta" }),
          " · task done ",
          h("span", { class: "task-eta" }),
          h("span", { class: "step-time" }),
        ),
      ),
    );
    this.updateCurrent(box.querySelector(".task"), task);
  }

  updateCurrent(el, task) {
    el.dataset.stepsDone = task.steps_done;
    el.dataset.status = task.status;
    const attempt = task.attempts > 1 ? ` · attempt ${task.attempts}` : "";
    el.querySelector(".meta").textContent = ` ${task.activity} · priority ${task.priority} · ${task.status}${attempt}`;
    el.querySelector(".task-bar").setAttribute("aria-valuenow", task.steps_done);
    el.querySelector(".task-bar .label").textContent = `${task.steps_done} / ${task.quantity} steps`;
    el.querySelector(".step-time").textContent = ` · ${duration(task.step_seconds * 1000)} a step`;
    this.tick();
  }

  queuedRow(task, index, count) {
    const title = targetTitle(this.store.catalog, task.activity, task.target);
    const order = () => ids(this.list);
    return h(
      "li",
      { draggable: "true", dataset: { taskId: task.task_id, eta: task.eta ?? "" } },
      h("span", { class: "handle", title: "Drag to reorder", "aria-hidden": "true" }, "⠿"),
      h("span", { class: "name" }, `${title} × ${task.quantity}`),
      h("span", { class: "muted" }, `${task.activity} · priority ${task.priority} · ${duration(task.step_seconds * 1000)} a step`),
      h("span", { class: "eta" }),
      h(
        "span",
        { class: "row-actions" },
        h("button", { title: "Move up", disabled: index === 0, onclick: () => this.reorder(moved(order(), index, -1)) }, "↑"),
        h("button", { title: "Move down", disabled: index === count - 1, onclick: () => this.reorder(moved(order(), index, 1)) }, "↓"),
        h("button", { class: "cancel", title: "Cancel this task", onclick: () => this.cancel(task) }, "✕"),
      ),
    );
  }

  renderStats(stats) {
    const rows = [
      ["Completed", stats.completed],
      ["Cancelled", stats.cancelled],
      ["Failed", stats.failed],
      ["Steps", stats.steps],
      ["Fights won / lost", `${stats.fights_won} / ${stats.fights_lost}`],
      ["Crafts failed", stats.crafts_failed],
      ["Rare drops", stats.rare_drops],
      ...Object.entries(stats.completed_by_activity ?? {}).map(([a, n]) => [`${capitalise(a)} tasks done`, n]),
    ];
    replaceChildren(
      $("#stats", this.root),
      rows.map(([label, value]) => [h("dt", {}, label), h("dd", { dataset: { stat: label } }, value)]),
    );
  }

  // the moving parts: bars and countdowns, from the ETAs and the clock
  tick() {
    const queue = this.store.queue;
    if (!queue) return;
    const now = Date.now();
    const current = queue.current;
    const box = $("#current .task", this.root);
    if (current && box) {
      const p = taskProgress(current, now);
      box.querySelector(".task-bar .fill").style.width = percent(p.fraction);
      box.querySelector(".step-bar .fill").style.width = percent(p.stepFraction);
      box.querySelector(".step-eta").textContent = p.nextStepAt === null ? "–" : eta(p.nextStepAt, now);
      box.querySelector(".task-eta").textContent = p.etaAt === null ? "–" : eta(p.etaAt, now);
    }
    for (const row of this.list.querySelectorAll("li[data-task-id]")) {
      const at = row.dataset.eta ? Date.parse(row.dataset.eta) : null;
      row.querySelector(".eta").textContent = at === null ? "waits" : `done ${eta(at, now)}`;
    }
    const end = queueEta(queue);
    $("#queue-eta", this.root).textContent =
      end === null ? (queue.paused ? "· paused" : "") : `· all done ${eta(end, now)}`;
  }

  async reorder(order) {
    await this.command("queue.reorder", { order }, "Order saved.");
  }

  async cancel(task) {
    await this.command("queue.cancel", { task_id: task.task_id }, "Task cancelled.");
  }

  async togglePause() {
    const paused = this.store.queue?.paused;
    await this.command(paused ? "queue.resume" : "queue.pause", {}, paused ? "Resumed." : "Paused.");
  }

  async command(method, params, done) {
    const notice = $("#queue-notice", this.root);
    notice.className = "notice";
    notice.textContent = "…";
    try {
      const answer = await this.commands.send(method, params);
      notice.className = answer.queued ? "notice pending" : "notice ok";
      notice.textContent = answer.queued ? "Offline: kept here, sent when the connection is back." : done;
      this.store.scheduleRefresh();
    } catch (err) {
      notice.className = "notice refused";
      notice.textContent = refusal(err);
      this.restore();
    }
  }

  // back to the server's order, whatever the rows were dragged to
  restore() {
    delete this.list.dataset.key;
    this.render();
  }
}

function moved(order, index, by) {
  const out = [...order];
  const [task] = out.splice(index, 1);
  out.splice(index + by, 0, task);
  return out;
}
