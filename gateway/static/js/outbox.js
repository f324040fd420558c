// Commands made while disconnected, kept in localStorage until sync.push has taken them.
// Each carries its command_id, so sending one twice (a push cut off by another disconnect) is harmless.

export class Outbox extends EventTarget {
  constructor(playerId) {
    super();
    this.key = `questlog.outbox.${playerId}`;
  }

  list() {
    try {
      return JSON.parse(localStorage.getItem(this.key) ?? "[]");
    } catch {
      return [];
    }
  }

  get size() {
    return this.list().length;
  }

  add(command) {
    this._save([...this.list(), command]);
  }

  remove(commandIds) {
    const gone = new Set(commandIds);
    this._save(this.list().filter((c) => !gone.has(c.params.command_id)));
  }

  _save(commands) {
    if (commands.length) localStorage.setItem(this.key, JSON.stringify(commands));
    else localStorage.removeItem(this.key);
    this.dispatchEvent(new CustomEvent("change", { detail: { size: commands.length } }));
  }
}
