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
// repeat one). Transports: WebSocket, then server-sent events, then long-polling, for networks whose
// proxies break WebSocket; it says which one it uses and why in its state events.

/** Close codes after which reconnecting at once is pointless or harmful. */
const CLOSE_REPLACED = 4001;
const CLOSE_RESTART = 1012;

/** How many delivered push ids are remembered to drop replayed duplicates. */
const SEEN_IDS = 1024;

/** The transports, in the order they are tried. */
const TRANSPORTS = ["websocket", "sse", "poll"];

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
 * @property {Array<"websocket"|"sse"|"poll">} [transports] the transports to try, in order (default all three)
 */

/**
 * A connection to Herald that keeps itself connected. Events: "push" ({id, data, ts}), "room" ({room,
 * items: [{id, data, ts}]}), "membership" ({room, joined, recovered}), "state" ({state:
 * "connecting"|"open"|"closed", transport, node, reason}), "error" ({code, message, ref}).
 * It tries the transports in order and keeps the first that reaches its welcome; one that fails before
 * its welcome hands over to the next, and after the last the first is tried again.
 */
export class HeraldClient extends EventTarget {
  /** @param {HeraldOptions} opts */
  constructor(opts) {
    super();
    this.opts = { device: "web", minBackoff: 500, maxBackoff: 15000, upTimeout: 5000, transports: TRANSPORTS, ...opts };
    if (!this.opts.tokenProvider && !this.opts.token && !(this.opts.authURL && this.opts.uid)) {
      throw new Error("herald: give authURL with uid and password, a token with its wsURL, or a tokenProvider");
    }
    /** The open or opening transport; null between connections. */
    this.conn = null;
    /** Index in opts.transports of the transport in use or to try next. */
    this.tried = 0;
    this.running = false;
    this.attempt = 0;
    this.seen = new Set();
    this.seenOrder = [];
    /** @type {Map<string, {data: any, resolve: (id: string) => void, reject: (e: Error) => void, timer: any}>} */
    this.pending = new Map();
    this.relogin = false;
    this.timers = { heartbeat: null, reconnect: null, idle: null };
    /** The rooms joined, each with the id of the last message seen in it (to recover after a reconnect). */
    this.rooms = new Map();
    /** @type {Map<string, {resolve: (v: any) => void, reject: (e: Error) => void}>} joins and leaves waiting for their answer, by ref */
    this.roomCalls = new Map();
  }

  /** Connects, and keeps reconnecting until close(). */
  start() {
    if (this.running) return;
    this.running = true;
    this.connect();
  }

  /** Closes the connection for good (an HTTP session is told so); sends still waiting fail. */
  close() {
    this.running = false;
    clearTimeout(this.timers.reconnect);
    this.stopTimers();
    if (this.conn) this.conn.close(1000, "client closed", true);
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

  /**
   * Joins a room, now and again after every reconnect (asking for what was missed meanwhile). Resolves
   * with {recovered} once the server answered; rejects with the server's error (forbidden,
   * invalid_room, too_many_rooms). While disconnected it resolves at the next connect.
   * @param {string} room
   * @returns {Promise<{recovered?: boolean}>}
   */
  join(room) {
    if (!this.rooms.has(room)) this.rooms.set(room, "");
    return this.roomCall("join", room).catch((err) => {
      this.rooms.delete(room); // refused: not asked again after a reconnect
      throw err;
    });
  }

  /**
   * Leaves a room.
   * @param {string} room
   * @returns {Promise<{}>}
   */
  leave(room) {
    this.rooms.delete(room);
    return this.roomCall("leave", room);
  }

  /** The transport in use (or being tried). */
  get transport() {
    return this.opts.transports[this.tried % this.opts.transports.length];
  }

  /**
   * Changes the transports to try (in order) and reconnects with the first of them.
   * @param {Array<"websocket"|"sse"|"poll">} transports
   */
  useTransports(transports) {
    this.opts.transports = transports.filter((t) => TRANSPORTS.includes(t));
    if (!this.opts.transports.length) this.opts.transports = TRANSPORTS;
    this.tried = 0;
    if (this.conn) this.conn.close(4000, "switching to " + this.transport, true);
  }

  /** Drops the current connection, as a broken network would; the client reconnects by itself. */
  drop(reason = "dropped") {
    if (this.conn) this.conn.close(4000, reason);
  }

  // --- internals ---

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  async credentials() {
    const o = this.opts;
    if (o.tokenProvider) return o.tokenProvider();
    // A fixed token is used again when there is no way to get a new one: a refusal then shows as an error.
    if (o.token && (!this.relogin || !o.authURL)) return { token: o.token, wsURL: o.wsURL };
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
    const transport = this.transport;
    this.emit("state", { state: "connecting", transport });
    let creds;
    try {
      creds = await this.credentials();
    } catch (err) {
      this.emit("error", { code: err.code || "login_failed", message: err.message });
      // Wrong credentials will not get better by retrying quickly; anything else might.
      if (err.status === 401 || err.status === 403) {
        this.running = false;
        this.emit("state", { state: "closed", transport, reason: err.message });
        return;
      }
      return this.scheduleReconnect("login failed");
    }
    if (!this.running) return;
    const open = { websocket: openWebSocket, sse: openEventStream, poll: openLongPoll }[transport];
    const conn = open(creds, {
      frame: (f) => conn === this.conn && this.onFrame(f),
      close: (code, reason) => this.onClose(conn, code, reason),
    });
    this.conn = conn;
  }

  onFrame(f) {
    this.armIdle();
    switch (f.type) {
      case "welcome":
        this.attempt = 0;
        this.relogin = false;
        this.heartbeatS = f.heartbeat_s || 30;
        this.conn.welcomed = true;
        this.startHeartbeat();
        this.emit("state", { state: "open", transport: this.transport, node: f.node, connID: f.conn_id });
        for (const ref of this.pending.keys()) this.sendUp(ref);
        for (const [room, since] of this.rooms) this.write({ type: "join", room, ...(since ? { since } : {}) });
        for (const [ref, call] of this.roomCalls) this.write({ type: call.type, room: call.room, ref });
        break;
      case "room": {
        // Items replayed by a recovering join may repeat ones already shown: dropped by id.
        const items = (f.items || []).filter((m) => !this.seen.has(m.id));
        for (const m of items) this.remember(m.id);
        if (f.items && f.items.length && this.rooms.has(f.room)) this.rooms.set(f.room, f.items[f.items.length - 1].id);
        if (items.length) this.emit("room", { room: f.room, items });
        break;
      }
      case "joined":
      case "left": {
        const call = f.ref && this.roomCalls.get(f.ref);
        if (call) {
          this.roomCalls.delete(f.ref);
          call.resolve(f.type === "joined" ? { recovered: f.recovered } : {});
        }
        this.emit("membership", { room: f.room, joined: f.type === "joined", recovered: f.recovered });
        break;
      }
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
        const call = f.ref && this.roomCalls.get(f.ref);
        if (call) {
          this.roomCalls.delete(f.ref);
          call.reject(Object.assign(new Error(f.message), { code: f.code }));
        }
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

  onClose(conn, code, reason) {
    if (conn !== this.conn) return;
    this.conn = null;
    this.stopTimers();
    const transport = this.transport;
    if (code === CLOSE_RESTART) this.relogin = true;
    this.emit("state", { state: "closed", transport, code, reason });
    if (!this.running) return;
    // A fallback that worked is not kept for good: the next connect tries the first transport again
    // (the node or network that refused it may have been the problem).
    if (conn.welcomed) this.tried = 0;
    if (!conn.welcomed) {
      // Refused or broken before its welcome: the token may have expired (log in again), or this
      // network breaks the transport (try the next one; after the last, the first again).
      this.relogin = true;
      if (code !== CLOSE_REPLACED && this.opts.transports.length > 1) {
        this.tried++;
        const why = transport + " failed before its welcome (" + (reason || "code " + code) + "); trying " + this.transport;
        if (this.tried % this.opts.transports.length !== 0) {
          this.emit("state", { state: "connecting", transport: this.transport, reason: why });
          return this.connect();
        }
        return this.scheduleReconnect(why);
      }
    }
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
    this.emit("state", { state: "connecting", transport: this.transport, reason: why, retryInMs: Math.round(delay) });
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
    this.timers.idle = setTimeout(() => this.drop("no frame for three heartbeats"), 3 * this.heartbeatS * 1000);
  }

  stopTimers() {
    clearInterval(this.timers.heartbeat);
    clearTimeout(this.timers.idle);
  }

  roomCall(type, room) {
    const ref = randomRef();
    return new Promise((resolve, reject) => {
      this.roomCalls.set(ref, { type, room, resolve, reject });
      this.write({ type, room, ref });
    });
  }

  sendUp(ref) {
    const p = this.pending.get(ref);
    if (!p) return;
    clearTimeout(p.timer);
    p.timer = setTimeout(() => this.sendUp(ref), this.opts.upTimeout);
    this.write({ type: "up", ref, data: p.data });
  }

  write(frame) {
    if (this.conn && this.conn.welcomed) this.conn.send(frame);
  }

  remember(id) {
    this.seen.add(id);
    this.seenOrder.push(id);
    if (this.seenOrder.length > SEEN_IDS) this.seen.delete(this.seenOrder.shift());
  }
}

// --- transports ---
//
// Each opens a connection and reports to two callbacks: frame(f) for every server frame, parsed, and
// close(code, reason) once when it ends. It returns {send(frame), close(code, reason, leave)}; leave
// tells the server the client is gone (an HTTP session otherwise lives until three heartbeats pass).

function openWebSocket(creds, on) {
  const url = new URL(creds.wsURL);
  url.searchParams.set("token", creds.token);
  const ws = new WebSocket(url.toString());
  ws.onmessage = (ev) => {
    try {
      on.frame(JSON.parse(ev.data));
    } catch {
      // not a frame: ignored
    }
  };
  ws.onclose = (ev) => on.close(ev.code, ev.reason);
  ws.onerror = () => {}; // onclose follows with the code
  return {
    send: (f) => ws.readyState === WebSocket.OPEN && ws.send(JSON.stringify(f)),
    close: (code, reason) => ws.close(code, reason),
  };
}

/** The push-server's HTTP base URL, from the ws_url auth handed out: ws://host/ws → http://host. */
function httpBase(wsURL) {
  const u = new URL(wsURL);
  u.protocol = u.protocol === "wss:" ? "https:" : "http:";
  u.pathname = u.pathname.replace(/\/ws$/, "");
  u.search = "";
  return u.toString().replace(/\/$/, "");
}

/**
 * The sending half of both HTTP transports: frames go by POST /send, those written in one turn of the
 * event loop together as one array. A refused session ends the connection.
 */
function sender(base, conn, end) {
  let queue = [];
  return (f) => {
    queue.push(f);
    if (queue.length > 1) return;
    queueMicrotask(async () => {
      const frames = queue;
      queue = [];
      if (!conn.session) return;
      try {
        const resp = await fetch(base + "/send?session=" + encodeURIComponent(conn.session), {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(frames),
        });
        // 429: too many upstream messages in flight; their resend timers try again.
        if (resp.status === 401 || resp.status === 403) end(1006, "session refused: HTTP " + resp.status);
      } catch (err) {
        end(1006, "send failed: " + err.message);
      }
    });
  };
}

/** An HTTP transport's frames; a close frame ends the connection with its code. */
function deliverFrames(frames, conn, on, end) {
  for (const f of frames) {
    if (conn.ended) return;
    if (f.type === "close") return end(f.code, f.reason || "");
    if (f.type === "welcome") conn.session = f.session;
    on.frame(f);
  }
}

function openEventStream(creds, on) {
  const base = httpBase(creds.wsURL);
  const es = new EventSource(base + "/sse?token=" + encodeURIComponent(creds.token));
  const conn = { session: "", ended: false };
  const end = (code, reason) => {
    if (conn.ended) return;
    conn.ended = true;
    es.close(); // else the browser reconnects by itself, with a token that may be stale
    on.close(code, reason);
  };
  es.onmessage = (ev) => {
    let f;
    try {
      f = JSON.parse(ev.data);
    } catch {
      return;
    }
    deliverFrames([f], conn, on, end);
  };
  es.onerror = () => end(1006, "event stream failed");
  conn.send = sender(base, conn, end);
  conn.close = (code, reason, leave) => {
    if (leave) leaveSession(base, conn);
    end(code, reason);
  };
  return conn;
}

function openLongPoll(creds, on) {
  const base = httpBase(creds.wsURL);
  const abort = new AbortController();
  const conn = { session: "", ended: false };
  const end = (code, reason) => {
    if (conn.ended) return;
    conn.ended = true;
    abort.abort();
    on.close(code, reason);
  };
  (async () => {
    let url = base + "/poll?token=" + encodeURIComponent(creds.token);
    while (!conn.ended) {
      let frames;
      try {
        const resp = await fetch(url, { signal: abort.signal, cache: "no-store" });
        if (!resp.ok) return end(1006, "poll refused: HTTP " + resp.status);
        frames = await resp.json();
      } catch (err) {
        return end(1006, "poll failed: " + err.message);
      }
      deliverFrames(frames, conn, on, end);
      url = base + "/poll?session=" + encodeURIComponent(conn.session);
    }
  })();
  conn.send = sender(base, conn, end);
  conn.close = (code, reason, leave) => {
    if (leave) leaveSession(base, conn);
    end(code, reason);
  };
  return conn;
}

/** Tells the push-server an HTTP session is over, so its route goes now; sent even as the page unloads. */
function leaveSession(base, conn) {
  if (!conn.session || conn.ended) return;
  fetch(base + "/send?session=" + encodeURIComponent(conn.session), {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: '{"type":"close"}',
    keepalive: true,
  }).catch(() => {});
}

function randomRef() {
  const b = new Uint8Array(12);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}
