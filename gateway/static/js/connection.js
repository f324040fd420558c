// One JSON-RPC session over a WebSocket that survives disconnects.
//
// It reconnects by itself (jittered exponential backoff; at once after 1001),
// says session.hello with its epoch and version so the gateway replays exactly
// the missed events, and hands events on in version order without gap or
// duplicate (a gap is filled with events.replay). Events it dispatches:
//   "status"   {state: connecting | connected | reconnecting | closed, attempt}
//   "hello"    {result, reconnected}  once per session, before that session's events
//   "state"    {state, version}        a full state (first hello, or a resume that could not recover)
//   "event"    event params, in version order
//   "progress" task.progress params (ephemeral)
//   "auth-failed" {reason}             the token is refused and no new one can be had

export class RpcError extends Error {
  constructor({ code, message, data }) {
    super(message);
    this.code = code;
    this.data = data;
  }
}

export class ConnectionLost extends Error {
  constructor(message = "the connection closed before the answer") {
    super(message);
  }
}

const CALL_TIMEOUT_MS = 15000;
const BACKOFF_BASE_MS = 200;
const BACKOFF_MAX_MS = 5000;
const GOING_AWAY = 1001;
const TOKEN_EXPIRED = 4001;
const TOO_MANY = 4029;
const NOT_AUTHENTICATED = -32001;
const RATE_LIMITED = -32029;

export class Connection extends EventTarget {
  // getToken(renew): the token to say hello with; renew = the last one was refused or expired
  constructor(url, getToken) {
    super();
    this.url = url;
    this.getToken = getToken;
    this.epoch = null;
    this.version = null;
    this.state = "connecting";
    this.sessions = 0;
    this._ws = null;
    this._ready = false; // session.hello answered on the current socket
    this._ids = 0;
    this._pending = new Map(); // id -> {resolve, reject, timer}
    this._attempt = 0;
    this._renewToken = false;
    this._timer = null;
    this._chain = Promise.resolve();
    this._stopped = false;
    this._onOnline = () => this._retryNow();
  }

  get connected() {
    return this._ready && this._ws?.readyState === WebSocket.OPEN;
  }

  start() {
    window.addEventListener("online", this._onOnline);
    this._open();
  }

  stop() {
    this._stopped = true;
    window.removeEventListener("online", this._onOnline);
    clearTimeout(this._timer);
    this._ws?.close(1000, "bye");
    this._setState("closed");
  }

  call(method, params = {}) {
    if (!this.connected) return Promise.reject(new ConnectionLost("not connected"));
    return this._send(this._ws, method, params);
  }

  // -- the socket's life ---------------------------------------------------------

  _open() {
    if (this._stopped) return;
    this._setState(this.sessions ? "reconnecting" : "connecting");
    const ws = new WebSocket(this.url);
    this._ws = ws;
    this._ready = false;
    ws.onopen = () => this._hello(ws);
    ws.onmessage = (message) => this._receive(ws, message.data);
    ws.onclose = (close) => this._closed(ws, close.code);
  }

  async _hello(ws) {
    let token;
    try {
      token = await this.getToken(this._renewToken);
    } catch (err) {
      this._fail(String(err.message ?? err));
      ws.close();
      return;
    }
    const params = { token };
    if (this.epoch !== null && this.version !== null) params.resume = { epoch: this.epoch, version: this.version };
    try {
      await this._send(ws, "session.hello", params); // accepted in _receive, before the events behind it
    } catch (err) {
      if (err instanceof RpcError && err.code === RATE_LIMITED) return; // the gateway closes with 4029
      if (err instanceof RpcError && err.code === NOT_AUTHENTICATED) this._renewToken = true;
      if (ws.readyState === WebSocket.OPEN) ws.close(4000, "hello failed");
    }
  }

  _accept(ws, result) {
    this._ready = true;
    this._attempt = 0;
    this._renewToken = false;
    this._chain = Promise.resolve();
    const reconnected = this.sessions > 0;
    this.sessions += 1;
    this.epoch = result.epoch;
    if (!result.recovered) {
      this.version = result.version;
      this.dispatchEvent(new CustomEvent("state", { detail: { state: result.state, version: result.version } }));
    }
    this._setState("connected");
    this.dispatchEvent(new CustomEvent("hello", { detail: { result, reconnected } }));
  }

  _closed(ws, code) {
    for (const [id, pending] of this._pending) {
      if (pending.ws !== ws) continue;
      this._pending.delete(id);
      clearTimeout(pending.timer);
      pending.reject(new ConnectionLost());
    }
    if (ws !== this._ws || this._stopped) return;
    this._ready = false;
    if (code === TOKEN_EXPIRED) this._renewToken = true;
    this._attempt += 1;
    let delay = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (this._attempt - 1));
    delay = delay / 2 + Math.random() * (delay / 2);
    if (code === GOING_AWAY && this._attempt === 1) delay = 0; // draining: go to another gateway at once
    if (code === TOO_MANY) delay = BACKOFF_MAX_MS;
    this._setState("reconnecting");
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this._open(), delay);
  }

  _retryNow() {
    if (this._stopped || this.connected) return;
    clearTimeout(this._timer);
    if (this._ws?.readyState !== WebSocket.CONNECTING) this._open();
  }

  _fail(reason) {
    this._stopped = true;
    clearTimeout(this._timer);
    this._setState("closed");
    this.dispatchEvent(new CustomEvent("auth-failed", { detail: { reason } }));
  }

  _setState(state) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("status", { detail: { state, attempt: this._attempt } }));
  }

  // -- frames ------------------------------------------------------------------------

  _send(ws, method, params) {
    const id = ++this._ids;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new ConnectionLost(`${method}: no answer in ${CALL_TIMEOUT_MS / 1000} s`));
      }, CALL_TIMEOUT_MS);
      this._pending.set(id, { resolve, reject, timer, ws, method });
      try {
        ws.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
      } catch (err) {
        clearTimeout(timer);
        this._pending.delete(id);
        reject(new ConnectionLost(String(err)));
      }
    });
  }

  _receive(ws, text) {
    let data;
    try {
      data = JSON.parse(text);
    } catch {
      return;
    }
    for (const message of Array.isArray(data) ? data : [data]) {
      if (message.method && message.id === undefined) this._notification(ws, message.method, message.params);
      else this._answer(ws, message);
    }
  }

  _answer(ws, message) {
    const pending = this._pending.get(message.id);
    if (!pending) return;
    this._pending.delete(message.id);
    clearTimeout(pending.timer);
    if (message.error) {
      pending.reject(new RpcError(message.error));
      return;
    }
    if (pending.method === "session.hello" && ws === this._ws) this._accept(ws, message.result);
    pending.resolve(message.result);
  }

  _notification(ws, method, params) {
    if (ws !== this._ws) return;
    if (method === "event") {
      this._chain = this._chain.then(() => this._event(ws, params));
    } else if (method === "task.progress") {
      // after the event it follows, which may still wait behind a gap repair
      this._chain = this._chain.then(() => this.dispatchEvent(new CustomEvent("progress", { detail: params })));
    } else {
      this.dispatchEvent(new CustomEvent(method, { detail: params }));
    }
  }

  async _event(ws, params) {
    if (ws !== this._ws) return;
    if (this.version !== null && params.version <= this.version) return; // a duplicate
    if (this.version !== null && params.version > this.version + 1) {
      const filled = await this._repair(ws, params.version);
      if (!filled) return; // the socket is gone: the next resume fills the gap
    }
    this._deliver(params);
  }

  async _repair(ws, upto) {
    while (this.version + 1 < upto) {
      let result;
      try {
        result = await this._send(ws, "events.replay", {
          from_version: this.version + 1,
          limit: Math.min(1000, upto - this.version - 1),
        });
      } catch {
        return false;
      }
      const got = result.events.filter((e) => e.version === this.version + 1 || e.version > this.version);
      if (!got.length) return false;
      for (const event of got) {
        if (event.version !== this.version + 1 || event.version >= upto) break;
        this._deliver(event);
      }
    }
    return true;
  }

  _deliver(params) {
    this.version = params.version;
    this.dispatchEvent(new CustomEvent("event", { detail: params }));
  }
}
