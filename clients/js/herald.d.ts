// Types of herald.js (Herald's browser client).

export interface HeraldOptions {
  /** auth's base URL, for logging in with uid and password. */
  authURL?: string;
  uid?: string;
  password?: string;
  /** The device name in the token (default "web"). */
  device?: string;
  /** A token minted by your backend (POST /v1/tokens) and the ws_url that came with it. */
  token?: string;
  wsURL?: string;
  /** Called before every connect instead of logging in. */
  tokenProvider?: () => Promise<{ token: string; wsURL: string }>;
  /** First reconnect delay in ms (default 500). */
  minBackoff?: number;
  /** Longest reconnect delay in ms (default 15000). */
  maxBackoff?: number;
  /** Milliseconds to wait for an up_ack before resending (default 5000). */
  upTimeout?: number;
  /** The transports to try, in order (default ["websocket", "sse", "poll"]). */
  transports?: Transport[];
}

/** WebSocket; server-sent events with POST /send; long-polling with POST /send. */
export type Transport = "websocket" | "sse" | "poll";

export interface PushDetail {
  id: string;
  data: unknown;
  /** Unix milliseconds. */
  ts: number;
}

export interface StateDetail {
  state: "connecting" | "open" | "closed";
  transport: Transport;
  node?: string;
  connID?: string;
  code?: number;
  reason?: string;
  retryInMs?: number;
}

export interface ErrorDetail {
  code: string;
  message: string;
  ref?: string;
}

export interface RoomDetail {
  room: string;
  /** The room's messages of one merge window, in publish order, without ones already delivered. */
  items: PushDetail[];
}

export interface MembershipDetail {
  room: string;
  joined: boolean;
  /** Set on a join that asked for what it missed: whether the server's history reached back. */
  recovered?: boolean;
}

export interface HeraldEventMap {
  push: CustomEvent<PushDetail>;
  room: CustomEvent<RoomDetail>;
  membership: CustomEvent<MembershipDetail>;
  state: CustomEvent<StateDetail>;
  error: CustomEvent<ErrorDetail>;
}

export declare class HeraldClient extends EventTarget {
  constructor(opts: HeraldOptions);
  /** Connects, and keeps reconnecting until close(). */
  start(): void;
  /** Closes the connection for good; sends still waiting fail. */
  close(): void;
  /** Sends data up to Kafka; resolves with the message's id once it is stored. */
  send(data: unknown): Promise<string>;
  /** Joins a room, now and after every reconnect (recovering what was missed). */
  join(room: string): Promise<{ recovered?: boolean }>;
  /** Leaves a room. */
  leave(room: string): Promise<{}>;
  /** The transport in use, or being tried. */
  readonly transport: Transport;
  /** Changes the transports to try, in order, and reconnects with the first. */
  useTransports(transports: Transport[]): void;
  /** Drops the current connection, as a broken network would; the client reconnects by itself. */
  drop(reason?: string): void;
  addEventListener<K extends keyof HeraldEventMap>(type: K, listener: (ev: HeraldEventMap[K]) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
}
