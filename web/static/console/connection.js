// The agent socket, kept open: reconnects by itself with jittered exponential back-off, and at
// once when the browser says the network is back (`online`), the tab is shown again
// (`visibilitychange`) or the page comes back from the back/forward cache (`pageshow`).
// A close with 1008 means the session ended: the console goes to the login page instead.
// Half-open connections (a laptop waking up) are found by our own `ping` frames. When the browser
// says the network is gone (`offline`), the socket is suspect at once: the console shows it
// offline and sends nothing on it, and a `ping` that gets no `pong` within PROBE_MS replaces it
// (sockets the browser keeps open while offline deliver nothing until it is back).

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 30_000;
const PING_EVERY_MS = 25_000; // a `ping` frame; no `pong` by the next one: the socket is dead
const PROBE_MS = 5_000; // after a wake-up, a `pong` must come this soon
export const CLOSE_POLICY = 1008;

export class Connection {
  /**
   * handlers: onFrame(frame), onOpen(), onDown({code, reason, retryInMs}), onSessionEnded(reason),
   * onAlive() (a suspect socket answered after all).
   */
  constructor(url, handlers) {
    this.url = url;
    this.handlers = handlers;
    this.ws = null;
    this.attempt = 0;
    this.retryTimer = null;
    this.pingTimer = null;
    this.probeTimer = null;
    this.awaitingPong = false;
    this.suspect = false; // the browser went offline: nothing is sent until a pong or a new socket
    this.stopped = true;
    this.held = false; // true: stay down until released (debugging, the browser tests)
    this.retryAt = null;
    this.nudge = this.nudge.bind(this);
  }

  get open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN && !this.suspect;
  }

  start() {
    this.stopped = false;
    window.addEventListener("online", this.nudge);
    window.addEventListener("offline", () => this.suspectNow());
    window.addEventListener("pageshow", this.nudge);
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this.nudge();
    });
    window.addEventListener("pagehide", (event) => {
      if (event.persisted && this.ws) this.drop(1000, "page hidden"); // lets the page be cached
    });
    this.connect();
  }

  /** Stop for good (the session ended). */
  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.stopPinging();
    if (this.ws) this.drop(1000, "stopped");
  }

  connect() {
    if (this.stopped || this.held) return;
    if (this.ws && (this.ws.readyState === WebSocket.OPEN ||
                    this.ws.readyState === WebSocket.CONNECTING)) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.retryAt = null;
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (error) {
      this.planRetry({ code: 0, reason: String(error) });
      return;
    }
    this.ws = ws;
    ws.addEventListener("open", () => {
      if (ws !== this.ws) return;
      this.startPinging();
      this.handlers.onOpen?.();
    });
    ws.addEventListener("message", (event) => {
      if (ws !== this.ws) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return; // not ours to show
      }
      if (!frame || typeof frame.type !== "string") return;
      if (frame.type === "pong") {
        this.awaitingPong = false;
        clearTimeout(this.probeTimer);
        if (this.suspect) { // it answers: it was not down after all
          this.suspect = false;
          this.handlers.onAlive?.();
        }
        return;
      }
      if (frame.type === "welcome") this.attempt = 0; // a server that welcomes us is back for good
      this.handlers.onFrame(frame);
    });
    ws.addEventListener("close", (event) => {
      if (ws !== this.ws) return; // one we dropped ourselves
      this.ws = null;
      this.suspect = false;
      this.stopPinging();
      if (event.code === CLOSE_POLICY) {
        this.stopped = true;
        this.handlers.onSessionEnded?.(event.reason);
        return;
      }
      this.planRetry({ code: event.code, reason: event.reason });
    });
  }

  planRetry(why) {
    if (this.stopped) return;
    if (this.held) {
      this.handlers.onDown?.({ ...why, retryInMs: null });
      return;
    }
    const ceiling = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** this.attempt);
    const delay = Math.round(ceiling / 2 + Math.random() * (ceiling / 2)); // jitter: no herd
    this.attempt += 1;
    this.retryAt = Date.now() + delay;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
    this.handlers.onDown?.({ ...why, retryInMs: delay });
  }

  /** Reconnect now if down or suspect; if up, make sure the socket still answers. */
  nudge() {
    if (this.stopped) return;
    if (this.suspect) {
      this.reconnectNow();
      return;
    }
    if (!this.ws) {
      this.attempt = Math.min(this.attempt, 1);
      this.connect();
      return;
    }
    if (this.open) this.probe();
  }

  /** The browser says the network is gone: show it now, and test the socket. */
  suspectNow() {
    if (this.stopped || !this.ws || this.ws.readyState !== WebSocket.OPEN || this.suspect) return;
    this.suspect = true;
    this.handlers.onDown?.({ code: 0, reason: "offline", retryInMs: null });
    this.probe();
  }

  /** Close the socket now and reconnect at once (a dead or stale connection). */
  reconnectNow() {
    if (this.stopped) return;
    if (this.ws) this.drop(4000, "reconnecting");
    this.attempt = 0;
    this.connect();
  }

  drop(code, reason) {
    const ws = this.ws;
    this.ws = null;
    this.suspect = false;
    this.stopPinging();
    try {
      ws.close(code, reason);
    } catch {
      // closing a socket that never opened
    }
    this.handlers.onDown?.({ code, reason, retryInMs: 0 });
  }

  send(frame) {
    if (!this.open) return false;
    try {
      this.ws.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }

  probe() {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    try {
      this.ws.send(JSON.stringify({ type: "ping" })); // a suspect socket too
    } catch {
      return;
    }
    this.awaitingPong = true;
    clearTimeout(this.probeTimer);
    this.probeTimer = setTimeout(() => {
      if (this.awaitingPong) this.reconnectNow();
    }, PROBE_MS);
  }

  startPinging() {
    this.stopPinging();
    this.awaitingPong = false;
    this.pingTimer = setInterval(() => {
      if (this.awaitingPong) { // the last ping went unanswered for a whole interval
        this.reconnectNow();
        return;
      }
      if (this.send({ type: "ping" })) this.awaitingPong = true;
    }, PING_EVERY_MS);
  }

  stopPinging() {
    clearInterval(this.pingTimer);
    clearTimeout(this.probeTimer);
    this.pingTimer = null;
    this.awaitingPong = false;
  }
}
