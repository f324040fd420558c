// Who plays: a dev login (player id -> token from POST /dev/token, served only by a
// gateway in dev mode) or a token pasted in (or passed as #token=… in the URL).
// The login is kept in localStorage, so the page can come back to it.

import { $ } from "./dom.js";

const KEY = "questlog.login";

export class DevLoginOff extends Error {}

export function storedLogin() {
  try {
    return JSON.parse(localStorage.getItem(KEY) ?? "null");
  } catch {
    return null;
  }
}

export function saveLogin(login) {
  localStorage.setItem(KEY, JSON.stringify(login));
}

export function clearLogin() {
  localStorage.removeItem(KEY);
}

export async function devToken(playerId) {
  const response = await fetch("/dev/token", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ player_id: playerId }),
  });
  if (response.status === 404 || response.status === 405) throw new DevLoginOff("dev login is off on this gateway");
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error ?? `dev login failed (${response.status})`);
  return body.token;
}

// the player a token names (its `sub`); the gateway checks the signature, not the page
export function playerOf(token) {
  try {
    const payload = token.split(".")[1].replaceAll("-", "+").replaceAll("_", "/");
    return JSON.parse(atob(payload)).sub ?? null;
  } catch {
    return null;
  }
}

export class LoginForm {
  constructor(root, onLogin) {
    this.root = root;
    this.onLogin = onLogin;
    $("#login-form", root).addEventListener("submit", (e) => {
      e.preventDefault();
      this.dev($("#login-player", root).value.trim());
    });
    $("#token-submit", root).addEventListener("click", () => this.pasted($("#login-token", root).value.trim()));
  }

  show(message = "") {
    this.root.hidden = false;
    $("#login-error", this.root).textContent = message;
    $("#login-player", this.root).focus();
  }

  hide() {
    this.root.hidden = true;
  }

  async dev(playerId) {
    try {
      const token = await devToken(playerId);
      this.onLogin({ token, playerId, dev: true });
    } catch (err) {
      if (err instanceof DevLoginOff) $("#token-login", this.root).open = true;
      $("#login-error", this.root).textContent = err.message;
    }
  }

  pasted(token) {
    const playerId = playerOf(token);
    if (!playerId) {
      $("#login-error", this.root).textContent = "That is not a questlog token (a JWT naming a player).";
      return;
    }
    this.onLogin({ token, playerId, dev: false });
  }
}
