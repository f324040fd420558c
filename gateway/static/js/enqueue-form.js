// The form that queues harvesting, crafting and combat, built from catalog.get.
//
// It shows what the chosen target requires (met or not, against the player's
// current state), its time per step and its rewards; it sends anyway and shows
// the server's word when a rule refuses the task (-32010: its `detail`).

import { $, h, replaceChildren } from "./dom.js";
import { capitalise, duration } from "./format.js";
import { findTarget, requirements, rewardsText } from "./requirements.js";

const ACTIVITIES = ["harvesting", "crafting", "combat"];
const RULE_VIOLATED = -32010;
const INVALID_PARAMS = -32602;

export class EnqueueForm {
  constructor(root, store, commands) {
    this.root = root;
    this.store = store;
    this.commands = commands;
    this.form = $("#enqueue-form", root);
    this.activity = "harvesting";
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.submit();
    });
    $("#target", root).addEventListener("change", () => this.renderDetails());
    $("#quantity", root).addEventListener("input", () => this.renderDetails());
    store.addEventListener("change", ({ detail }) => {
      if (detail.what === "catalog") this.renderChoices();
      if (detail.what === "player") this.renderDetails();
    });
  }

  renderChoices() {
    const catalog = this.store.catalog;
    if (!catalog) return;
    replaceChildren(
      $("#activity-tabs", this.root),
      ACTIVITIES.map((activity) =>
        h(
          "label",
          { class: "tab" },
          h("input", {
            type: "radio",
            name: "activity",
            value: activity,
            checked: activity === this.activity,
            onchange: () => this.choose(activity),
          }),
          capitalise(activity),
        ),
      ),
    );
    this.choose(this.activity);
  }

  choose(activity) {
    this.activity = activity;
    const catalog = this.store.catalog;
    const select = $("#target", this.root);
    replaceChildren(
      select,
      catalog.activities[activity].targets.map((t) =>
        h("option", { value: t.target }, `${t.title} (level ${t.requires?.level ?? 1})`),
      ),
    );
    this.renderDetails();
  }

  renderDetails() {
    const catalog = this.store.catalog;
    const target = $("#target", this.root).value;
    if (!catalog || !target) return;
    const spec = findTarget(catalog, this.activity, target);
    const quantity = Math.max(1, Number($("#quantity", this.root).value) || 1);
    const rows = requirements(catalog, this.activity, spec, this.store.player, quantity);
    replaceChildren(
      $("#requirements", this.root),
      rows.map((r) => h("li", { class: r.met ? "met" : "unmet" }, r.met ? "✓ " : "✗ ", r.text)),
    );
    const where = spec.location ? `${catalog.locations[spec.location]?.title ?? spec.location} · ` : "";
    replaceChildren(
      $("#target-info", this.root),
      `${where}${duration(spec.base_seconds * 1000)} a step at base speed · ${rewardsText(catalog, this.activity, spec)}`,
    );
    if (this.store.player && this.store.player.version === 0) {
      $("#target-info", this.root).append(h("br"), "Your starter kit arrives with your first command.");
    }
  }

  async submit() {
    const data = new FormData(this.form);
    const params = {
      activity: this.activity,
      target: data.get("target"),
      quantity: Number(data.get("quantity")),
      priority: Number(data.get("priority") || 0),
    };
    const notice = $("#enqueue-result", this.root);
    notice.className = "notice";
    notice.textContent = "…";
    try {
      const answer = await this.commands.send("queue.enqueue", params);
      if (answer.queued) {
        notice.className = "notice pending";
        notice.textContent = "Offline: kept here, sent when the connection is back.";
      } else {
        notice.className = "notice ok";
        notice.textContent = `Queued ${answer.result.task.quantity} × ${this.labelOf(params.target)}.`;
        this.store.scheduleRefresh();
      }
    } catch (err) {
      notice.className = "notice refused";
      notice.textContent = refusal(err);
    }
  }

  labelOf(target) {
    return findTarget(this.store.catalog, this.activity, target)?.title ?? target;
  }
}

// the words a player reads when the server refuses
export function refusal(err) {
  if (err.code === RULE_VIOLATED) return `Refused: ${err.data?.detail ?? err.message}`;
  if (err.code === INVALID_PARAMS) return `Invalid ${err.data?.field ?? "input"}: ${err.data?.reason ?? err.message}`;
  return `Error: ${err.message}`;
}
