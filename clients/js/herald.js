// Herald's browser client: one ES module, no dependencies, no build step.
//
//   import { HeraldClient } from "./herald.js";
//   const c = new HeraldClient({ authURL: "http://127.0.0.1:8081", uid: "demo", password: "…", device: "web" });
//   c.addEventListener("push", (e) => console.log(e.detail.data));
//   c.addEventListener("state", (e) => console.log(e.detail.state, e.detail.node));
//   c.start();
//   const id = await c.send({ text: "hello" }); // the upstream message's id, once Kafka has it
//
// It logs in (or takes a token, or asks a token provider on every connect), connects to the push-server
// auth names, acknowledges every push, keeps the heartbeat, reconnects with jittered backoff and logs in
// again after a drain (reconnect frame, close 1012), resends unacknowledged upstream messages with the
// same ref after a reconnect, and drops pushes it has already delivered (a replay after a reconnect may
// repeat one). Transport: WebSocket (the push-server's HTTP fallbacks are not served yet).

/** Close codes after which reconnecting at once is pointless or harmful. */
const CLOSE_REPLACED = 4001;
const CLOSE_RESTART = 1012;

/** How many delivered push ids are remembered to drop replayed duplicates. */
const SEEN_IDS = 1024;

/**
 * @typedef {object} HeraldOptions
 * @property {string} [authURL] auth's base URL, for logging in with uid and password
 * @property {string} [uid]
 * @property {string} [password]
 * @property {string} [device] the device name in the token (default "web")
 * @property {string} [token] a token minted by your backend (POST /v1/tokens) …
 * @property {string} [wsURL] … and the ws_url that came with it
 * @property {() => Promise<{token: string, wsURL: string}>} [tokenProvider] called before every connect
 * @property {number} [minBackoff] first reconnect delay in ms (default 500)
 * @property {number} [maxBackoff] longest reconnect delay in ms (default 15000)
 * @property {number} [upTimeout] ms to wait for an up_ack before resending (default 5000)
 */

/**
 * A connection to Herald that keeps itself connected. Events: "push" ({id, data, ts}), "state"
 * ({state: "connecting"|"open"|"closed", transport, node, reason}), "error" ({code, message, ref}).
 */
export class HeraldClient extends EventTarget {
  /** @param {HeraldOptions} opts */
  constructor(opts) {
    super();
    this.opts = { device: "web", minBackoff: 500, maxBackoff: 15000, upTimeout: 5000, ...opts };
    if (!this.opts.tokenProvider && !this.opts.token && !(this.opts.authURL && this.opts.uid)) {
      throw new Error("herald: give authURL with uid and password, a token with its wsURL, or a tokenProvider");
    }
    /** @type {WebSocket|null} */
    this.ws = null;
    this.running = false;
    this.attempt = 0;
    this.seen = new Set();
    this.seenOrder = [];
    /** @type {Map<string, {data: any, resolve: (id: string) => void, reject: (e: Error) => void, timer: any}>} */
    this.pending = new Map();
    this.relogin = false;
    this.timers = { heartbeat: null, reconnect: null, idle: null };
  }

  /** Connects, and keeps reconnecting until close(). */
  start() {
    if (this.running) return;
    this.running = true;
    this.connect();
  }

  /** Closes the connection for good; sends still waiting fail. */
  close() {
    this.running = false;
    clearTimeout(this.timers.reconnect);
    this.stopTimers();
    if (this.ws) this.ws.close(1000, "client closed");
    for (const [ref, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new Error("herald: client closed"));
      this.pending.delete(ref);
    }
  }

  /**
   * Sends data (any JSON value) up to Kafka. Resolves with the message's id once the push-server has
   * stored it; until then it is resent with the same ref after a timeout or a reconnect, so the
   * server can drop repeats.
   * @param {any} data
   * @returns {Promise<string>}
   */
  send(data) {
    const ref = randomRef();
    return new Promise((resolve, reject) => {
      this.pending.set(ref, { data, resolve, reject, timer: null });
      this.sendUp(ref);
    });
  }

  // --- internals ---

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  async credentials() {
    const o = this.opts;
    if (o.tokenProvider) return o.tokenProvider();
    if (o.token && !this.relogin) return { token: o.token, wsURL: o.wsURL };
    if (!o.authURL) throw new Error("herald: the token was refused and there is no authURL to log in again");
    const resp = await fetch(o.authURL.replace(/\/$/, "") + "/v1/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ uid: o.uid, password: o.password, device: o.device }),
    });
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      const err = new Error(body.error ? body.error.message : "login failed: HTTP " + resp.status);
      err.code = body.error ? body.error.code : "http_" + resp.status;
      err.status = resp.status;
      throw err;
    }
    return { token: body.token, wsURL: body.server.ws_url };
  }

  async connect() {
    if (!this.running) return;
    this.emit("state", { state: "connecting", transport: "websocket" });
    let creds;
    try {
      creds = await this.credentials();
    } catch (err) {
      this.emit("error", { code: err.code || "login_failed", message: err.message });
      // Wrong credentials will not get better by retrying quickly; anything else might.
      if (err.status === 401 || err.status === 403) {
        this.running = false;
        this.emit("state", { state: "closed", transport: "websocket", reason: err.message });
        return;
      }
      return this.scheduleReconnect("login failed");
    }
    if (!this.running) return;
    const url = new URL(creds.wsURL);
    url.searchParams.set("token", creds.token);
    const ws = new WebSocket(url.toString());
    this.ws = ws;
    ws.onmessage = (ev) => this.onFrame(ev.data);
    ws.onclose = (ev) => this.onClose(ws, ev.code, ev.reason);
    ws.onerror = () => {}; // onclose follows with the code
  }

  onFrame(raw) {
    let f;
    try {
      f = JSON.parse(raw);
    } catch {
      return;
    }
    this.armIdle();
    switch (f.type) {
      case "welcome":
        this.attempt = 0;
        this.relogin = false;
        this.heartbeatS = f.heartbeat_s || 30;
        this.startHeartbeat();
        this.emit("state", { state: "open", transport: "websocket", node: f.node, connID: f.conn_id });
        for (const ref of this.pending.keys()) this.sendUp(ref);
        break;
      case "push":
        // Acked even when it is a repeat: the server replays until it sees the ack.
        this.write({ type: "ack", id: f.id });
        if (this.seen.has(f.id)) return;
        this.remember(f.id);
        this.emit("push", { id: f.id, data: f.data, ts: f.ts });
        break;
      case "up_ack": {
        const p = this.pending.get(f.ref);
        if (!p) return;
        clearTimeout(p.timer);
        this.pending.delete(f.ref);
        p.resolve(f.id);
        break;
      }
      case "error": {
        const p = f.ref && this.pending.get(f.ref);
        if (p && !["unavailable", "rate_limited"].includes(f.code)) {
          clearTimeout(p.timer);
          this.pending.delete(f.ref);
          p.reject(Object.assign(new Error(f.message), { code: f.code }));
        }
        this.emit("error", { code: f.code, message: f.message, ref: f.ref });
        break;
      }
      case "reconnect":
        this.relogin = true; // the node is draining: auth picks another one
        break;
    }
  }

  onClose(ws, code, reason) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.stopTimers();
    if (code === CLOSE_RESTART) this.relogin = true;
    this.emit("state", { state: "closed", transport: "websocket", code, reason });
    if (!this.running) return;
    // Replaced by a newer connection of the same user: wait a full backoff rather than fight it.
    if (code === CLOSE_REPLACED) this.attempt = Math.max(this.attempt, 4);
    this.scheduleReconnect(reason || "closed " + code);
  }

  scheduleReconnect(why) {
    const o = this.opts;
    const base = Math.min(o.maxBackoff, o.minBackoff * 2 ** this.attempt);
    const delay = base / 2 + Math.random() * (base / 2); // jitter: a drained node's clients spread out
    this.attempt++;
    clearTimeout(this.timers.reconnect);
    this.timers.reconnect = setTimeout(() => this.connect(), delay);
    this.emit("state", { state: "connecting", transport: "websocket", reason: why, retryInMs: Math.round(delay) });
  }

  startHeartbeat() {
    clearInterval(this.timers.heartbeat);
    this.timers.heartbeat = setInterval(() => this.write({ type: "ping" }), this.heartbeatS * 1000);
    this.armIdle();
  }

  // Three heartbeats without a frame: the connection is dead even if the browser has not noticed.
  armIdle() {
    clearTimeout(this.timers.idle);
    if (!this.heartbeatS) return;
    this.timers.idle = setTimeout(() => this.ws && this.ws.close(4000, "no frame for three heartbeats"), 3 * this.heartbeatS * 1000);
  }

  stopTimers() {
    clearInterval(this.timers.heartbeat);
    clearTimeout(this.timers.idle);
  }

  sendUp(ref) {
    const p = this.pending.get(ref);
    if (!p) return;
    clearTimeout(p.timer);
    p.timer = setTimeout(() => this.sendUp(ref), this.opts.upTimeout);
    this.write({ type: "up", ref, data: p.data });
  }

  write(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  remember(id) {
    this.seen.add(id);
    this.seenOrder.push(id);
    if (this.seenOrder.length > SEEN_IDS) this.seen.delete(this.seenOrder.shift());
  }
}

function randomRef() {
  const b = new Uint8Array(12);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}
