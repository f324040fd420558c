// The page: log in, then connect and wire the views to one connection.

import { Commands } from "./commands.js";
import { Connection } from "./connection.js";
import { $ } from "./dom.js";
import { EnqueueForm } from "./enqueue-form.js";
import { Feed } from "./feed.js";
import { LoginForm, clearLogin, devToken, playerOf, saveLogin, storedLogin } from "./login.js";
import { Outbox } from "./outbox.js";
import { PlayerView } from "./player-view.js";
import { QueueView } from "./queue-view.js";
import { StatusView } from "./status-view.js";
import { Store } from "./store.js";

const login = new LoginForm($("#login"), play);

function wsUrl() {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
}

function boot() {
  const fromUrl = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromUrl && playerOf(fromUrl)) {
    history.replaceState(null, "", location.pathname + location.search); // keep the token out of the address bar
    play({ token: fromUrl, playerId: playerOf(fromUrl), dev: false });
    return;
  }
  const stored = storedLogin();
  if (stored) play(stored);
  else login.show();
}

function play(who) {
  saveLogin(who);
  login.hide();
  $("#game").hidden = false;
  $("#who").textContent = who.playerId;
  $("#logout").hidden = false;

  const connection = new Connection(wsUrl(), async (renew) => {
    if (!renew) return who.token;
    if (!who.dev) throw new Error("The token was refused or has expired: log in again.");
    who.token = await devToken(who.playerId);
    saveLogin(who);
    return who.token;
  });
  const outbox = new Outbox(who.playerId);
  const store = new Store(connection);
  const commands = new Commands(connection, outbox);
  const feed = new Feed($("#feed-panel"), store);
  new StatusView(document, connection, outbox);
  new EnqueueForm($("#enqueue-panel"), store, commands);
  new QueueView($("#queue-panel"), store, commands);
  new PlayerView($("#player-panel"), store);

  connection.addEventListener("state", ({ detail }) => store.setState(detail.state));
  connection.addEventListener("event", ({ detail }) => {
    feed.event(detail);
    store.scheduleRefresh();
  });
  connection.addEventListener("progress", ({ detail }) => store.applyProgress(detail));
  connection.addEventListener("hello", async ({ detail: { result, reconnected } }) => {
    if (reconnected) {
      feed.note(result.recovered ? `Reconnected; ${result.missed} missed events recovered.` : "Reconnected; state reloaded.");
    }
    try {
      await store.loadCatalog();
      if (result.unread) await showInbox(connection, feed);
    } catch {
      return; // cut off again: the next hello does it
    }
    store.scheduleRefresh();
    await commands.flush();
  });
  connection.addEventListener("auth-failed", ({ detail }) => {
    clearLogin();
    $("#game").hidden = true;
    login.show(detail.reason);
  });
  commands.addEventListener("synced", ({ detail }) => {
    if (detail.error) feed.note(`Offline commands not sent yet: ${detail.error.message}`, "bad");
    for (const r of detail.results) {
      const what = r.command?.method ?? "command";
      if (r.ok) feed.note(`Sent ${what} made while offline.`, "info");
      else feed.note(`${what} made while offline was refused: ${r.error?.data?.detail ?? r.error?.message}`, "bad");
    }
    store.scheduleRefresh();
  });
  $("#logout").addEventListener("click", () => {
    connection.stop();
    clearLogin();
    location.assign("/"); // a fresh page for the next player
  });
  connection.start();
}

async function showInbox(connection, feed) {
  const inbox = await connection.call("inbox.get", { limit: 20 });
  for (const item of [...inbox.items].reverse()) feed.note(`While you were away: ${item.title}`, "info");
}

boot();
