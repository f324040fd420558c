// Sending queue commands: at once when connected, else into the outbox for sync.push on reconnect.
//
// Every command gets a command_id, so a command whose answer was lost with the
// socket can go through the outbox too without taking effect twice. While the
// outbox holds anything, new commands queue behind it, so they keep their order.
// Events: "synced" {results} after a push; "queued" {command} when a command waits.

import { ConnectionLost } from "./connection.js";

const PUSH_LIMIT = 200; // sync.push takes at most 200 commands

export function commandId() {
  return crypto.randomUUID?.() ?? `c-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

export class Commands extends EventTarget {
  constructor(connection, outbox) {
    super();
    this.connection = connection;
    this.outbox = outbox;
    this._flushing = null;
  }

  // {result} when sent, {queued: true} when kept for later; a refusal throws its RpcError
  async send(method, params = {}) {
    const command = { method, params: { ...params, command_id: commandId() } };
    if (!this.connection.connected || this.outbox.size) {
      this._keep(command);
      return { queued: true };
    }
    try {
      return { result: await this.connection.call(method, command.params) };
    } catch (err) {
      if (!(err instanceof ConnectionLost)) throw err;
      this._keep(command);
      return { queued: true };
    }
  }

  _keep(command) {
    this.outbox.add(command);
    this.dispatchEvent(new CustomEvent("queued", { detail: { command } }));
    if (this.connection.connected) this.flush();
  }

  // send what the outbox holds with sync.push; resolves when done or cut off
  flush() {
    this._flushing ??= this._push().finally(() => (this._flushing = null));
    return this._flushing;
  }

  async _push() {
    while (this.connection.connected && this.outbox.size) {
      const batch = this.outbox.list().slice(0, PUSH_LIMIT);
      let answer;
      try {
        answer = await this.connection.call("sync.push", { commands: batch });
      } catch (err) {
        if (err instanceof ConnectionLost) return; // kept: the next session pushes them again
        // the whole push was refused (e.g. rate limited): report, keep the commands
        this.dispatchEvent(new CustomEvent("synced", { detail: { error: err, results: [] } }));
        return;
      }
      this.outbox.remove(answer.results.map((r) => r.command_id));
      const sent = new Map(batch.map((c) => [c.params.command_id, c]));
      const results = answer.results.map((r) => ({ ...r, command: sent.get(r.command_id) }));
      this.dispatchEvent(new CustomEvent("synced", { detail: { results } }));
    }
  }
}
