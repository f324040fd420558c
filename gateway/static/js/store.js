// What the page shows, as the server last said it: the catalog, the queue and the player.
//
// The server is the only source of truth: events do not get folded here; each
// one asks for a fresh queue.get and player.get (coalesced, at most one pair in
// flight), and a view never goes back to an older version. task.progress moves
// the current task between two reads. Events: "change" {what}, "progress".

const REFRESH_DELAY_MS = 40;

export class Store extends EventTarget {
  constructor(connection) {
    super();
    this.connection = connection;
    this.catalog = null;
    this.queue = null;
    this.player = null;
    this._timer = null;
    this._inflight = null;
    this._again = false;
  }

  async loadCatalog() {
    this.catalog ??= await this.connection.call("catalog.get");
    this._changed("catalog");
  }

  // a full state from session.hello: authoritative, even at a lower version (a new epoch)
  setState({ queue, player }) {
    this.queue = queue;
    this.player = player;
    this._changed("queue");
    this._changed("player");
  }

  // soon, once: several events in a row cost one read
  scheduleRefresh() {
    if (this._timer !== null) return;
    this._timer = setTimeout(() => {
      this._timer = null;
      this.refresh();
    }, REFRESH_DELAY_MS);
  }

  async refresh() {
    if (this._inflight) {
      this._again = true;
      return this._inflight;
    }
    this._inflight = this._read().finally(() => {
      this._inflight = null;
      if (this._again) {
        this._again = false;
        this.refresh();
      }
    });
    return this._inflight;
  }

  async _read() {
    if (!this.connection.connected) return;
    try {
      const [queue, player] = await Promise.all([
        this.connection.call("queue.get"),
        this.connection.call("player.get"),
      ]);
      this._set("queue", queue);
      this._set("player", player);
    } catch {
      // disconnected, or rate limited: the next hello or event reads again
    }
  }

  _set(what, view) {
    if (!view) return;
    const shown = this[what];
    if (shown && shown.version > view.version) return; // an older read answered late
    this[what] = view;
    this._changed(what);
  }

  applyProgress(progress) {
    const current = this.queue?.current;
    if (!current || current.task_id !== progress.task_id || progress.step < current.steps_done) return;
    current.steps_done = progress.step;
    current.eta = progress.eta;
    current.step_seconds = progress.step_seconds ?? current.step_seconds;
    if (current.status !== "paused") current.status = "running";
    this.dispatchEvent(new CustomEvent("progress", { detail: progress }));
  }

  _changed(what) {
    this.dispatchEvent(new CustomEvent("change", { detail: { what } }));
  }
}
