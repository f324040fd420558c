// The connection status in the header: connecting, connected, reconnecting,
// recovered N missed events; and how many commands wait in the outbox.

import { $ } from "./dom.js";

export class StatusView {
  constructor(root, connection, outbox) {
    this.el = $("#status", root);
    this.outboxEl = $("#outbox-count", root);
    this.versionEl = $("#version", root);
    this.connection = connection;
    connection.addEventListener("status", ({ detail }) => this.onStatus(detail));
    connection.addEventListener("hello", ({ detail }) => this.onHello(detail));
    connection.addEventListener("event", () => this.showVersion());
    connection.addEventListener("state", () => this.showVersion());
    outbox.addEventListener("change", ({ detail }) => this.showOutbox(detail.size));
    this.showOutbox(outbox.size);
  }

  onStatus({ state, attempt }) {
    if (state === "connected") return; // said by onHello, which knows whether it recovered
    const text = {
      connecting: "connecting…",
      reconnecting: attempt > 1 ? `reconnecting… (attempt ${attempt})` : "reconnecting…",
      closed: "disconnected",
    }[state];
    this.set(state, text);
  }

  onHello({ result, reconnected }) {
    if (!reconnected) this.set("connected", "connected");
    else if (result.recovered) {
      const n = result.missed;
      this.set("recovered", `connected · recovered ${n} missed event${n === 1 ? "" : "s"}`);
      this.el.dataset.missed = String(n);
    } else this.set("connected", "connected · reloaded the full state");
    this.showVersion();
  }

  set(state, text) {
    this.el.dataset.state = state;
    this.el.textContent = text;
  }

  showVersion() {
    const v = this.connection.version;
    this.versionEl.textContent = v === null ? "" : `v${v}`;
    this.versionEl.dataset.version = v === null ? "" : String(v);
  }

  showOutbox(size) {
    this.outboxEl.hidden = size === 0;
    this.outboxEl.textContent = `${size} command${size === 1 ? "" : "s"} waiting for the connection`;
    this.outboxEl.dataset.size = String(size);
  }
}
