// Concierge's website chat: one <script src=".../widget.js" async> on any page (docs/widget.md).
// No framework, no build step. A launcher and a panel in a shadow root, styled only by
// widget.css from Concierge's own origin: no inline style, no inline script, no eval, so a
// strict Content-Security-Policy that lists our origin runs it. Every untrusted text (bot, agent,
// visitor, names) goes in with textContent, never as HTML. Nothing is stored and no socket opens
// until the visitor opens the chat or a conversation of theirs already exists.
(() => {
  "use strict";

  const script = document.currentScript ||
    [...document.querySelectorAll("script[src*='widget.js']")].pop();
  if (!script || !window.WebSocket) return;
  const ORIGIN = new URL(script.src, location.href).origin;
  const CSS_URL = ORIGIN + "/widget.css?v=__CSS_VERSION__"; // the server fills in the version
  const SOCKET_URL = ORIGIN.replace(/^http/, "ws") + "/ws/visitor";
  const data = script.dataset;
  const FLOW = data.flow || "";
  // One key per Concierge origin and flow: two sites' or two widgets' conversations never mix.
  const KEY = "concierge:" + ORIGIN + ":" + (FLOW || "-");
  const instances = (window.__concierge = window.__concierge || {});
  if (instances[KEY]) return; // the same widget twice on a page: once is enough
  instances[KEY] = true;

  const FIRST_DELAY_MS = 500;
  const MAX_DELAY_MS = 30000;
  const PING_EVERY_MS = 25000; // a `ping` frame: no `pong` by the next one means a dead socket
  const PROBE_MS = 5000; // after a wake-up (visible again, online) a `pong` must come this soon
  const TYPING_IDLE_MS = 4000; // the visitor stopped typing this long ago: say so to the agent
  const TYPING_SHOWN_MS = 8000; // dots without news go away after this
  const MAX_TEXT = 4000; // MAX_TEXT_CHARS of docs/protocol.md
  const CLOSE_POLICY = 1008; // refused origin or failed auth: retrying cannot help
  const CLOSE_TOO_BIG = 1009;
  const CLOSE_TRY_LATER = 1013;

  // --- words -----------------------------------------------------------------------------------

  const WORDS = {
    en: {
      launcher: "Chat with us", close: "Close the chat", messages: "Conversation",
      message: "Message", placeholder: "Type your message…", send: "Send",
      you: "You", bot: "Assistant", agent: "Agent", sending: "Sending…", sent: "Sent",
      queuedSend: "Waiting for the connection…", failed: "Not sent",
      offline: "Connection lost: reconnecting…", offlineHint: "What you write is sent when it is back.",
      retry: "Reconnect now", unavailable: "The chat is not available on this page.",
      line: "You are number {n} in line.", lineNext: "You are next in line.",
      wait: "About {m} min.", waitShort: "Less than a minute.",
      waiting: "Waiting for a person to join.", leave: "Leave a message instead",
      subBot: "Assistant", subQueued: "Waiting for a person", subClosed: "Conversation ended",
      typing: "{name} is typing…", ended: "This conversation has ended.",
      rate: "How was this conversation?", star: "{n} of 5", thanks: "Thank you for your rating.",
      comment: "Anything to add? (optional)", sendComment: "Send comment",
      thanksComment: "Thank you for your comment.",
      end: "End chat", endAsk: "End this conversation?", endYes: "Yes, end it", endNo: "Cancel",
      again: "Start a new conversation", full: "This conversation is full: start a new one.",
      unread1: "1 new message in the chat", unreadN: "{n} new messages in the chat",
      sys: {}, // the server's own words are English
    },
    de: {
      launcher: "Chatten Sie mit uns", close: "Chat schließen", messages: "Gesprächsverlauf",
      message: "Nachricht", placeholder: "Ihre Nachricht…", send: "Senden",
      you: "Sie", bot: "Assistent", agent: "Mitarbeiter", sending: "Wird gesendet…", sent: "Gesendet",
      queuedSend: "Wartet auf die Verbindung…", failed: "Nicht gesendet",
      offline: "Verbindung verloren: wird wiederhergestellt…",
      offlineHint: "Was Sie schreiben, wird danach gesendet.",
      retry: "Jetzt neu verbinden", unavailable: "Der Chat ist auf dieser Seite nicht verfügbar.",
      line: "Sie sind Nummer {n} in der Warteschlange.", lineNext: "Sie sind als Nächstes dran.",
      wait: "Etwa {m} Min.", waitShort: "Weniger als eine Minute.",
      waiting: "Wir warten auf eine Person.", leave: "Stattdessen eine Nachricht hinterlassen",
      subBot: "Assistent", subQueued: "Wartet auf eine Person", subClosed: "Gespräch beendet",
      typing: "{name} schreibt…", ended: "Dieses Gespräch ist beendet.",
      rate: "Wie war dieses Gespräch?", star: "{n} von 5", thanks: "Danke für Ihre Bewertung.",
      comment: "Möchten Sie etwas hinzufügen? (optional)", sendComment: "Kommentar senden",
      thanksComment: "Danke für Ihren Kommentar.",
      end: "Chat beenden", endAsk: "Dieses Gespräch beenden?", endYes: "Ja, beenden",
      endNo: "Abbrechen",
      again: "Neues Gespräch beginnen", full: "Dieses Gespräch ist voll: beginnen Sie ein neues.",
      unread1: "1 neue Nachricht im Chat", unreadN: "{n} neue Nachrichten im Chat",
      // the server's system messages, by event (and reason): docs/protocol.md, "status and system messages"
      sys: {
        queued: "Wir warten auf eine Person.",
        "queued:agent_lost": "Die Person ist nicht mehr erreichbar; Sie sind wieder vorne in der Warteschlange.",
        assigned: "{name} ist dem Gespräch beigetreten.",
        transferred: "{name} hat das Gespräch übernommen.",
        "transferred:transferred": "Sie werden weitergeleitet; wir warten auf eine Person.",
        "to_bot:no_agents": "Gerade kann niemand übernehmen; weiter mit dem Assistenten.",
        "to_bot:left_queue": "Sie haben die Warteschlange verlassen; weiter mit dem Assistenten.",
        "to_bot:max_wait": "Niemand konnte rechtzeitig übernehmen; weiter mit dem Assistenten.",
        "to_bot:agent": "Der Assistent übernimmt wieder.",
        "closed:visitor": "Sie haben das Gespräch beendet.",
        "closed:bot": "Das Gespräch ist beendet.",
        "closed:agent": "Das Gespräch wurde geschlossen.",
        "closed:flow_removed": "Dieses Gespräch wurde geschlossen: sein Ablauf ist nicht mehr verfügbar.",
      },
    },
  };
  const LOCALE = data.locale || document.documentElement.lang || navigator.language || "en";
  const L = WORDS[LOCALE.slice(0, 2).toLowerCase()] || WORDS.en;
  const say = (word, values) =>
    L[word].replace(/\{(\w+)\}/g, (_, name) => String(values[name]));
  /** A system message in the widget's language where it has words for it, else as sent. */
  function systemText(message) {
    const words = L.sys[`${message.event}:${message.reason}`] || L.sys[message.event];
    const name = message.agent && typeof message.agent.name === "string" ? message.agent.name : "";
    if (!words || (words.includes("{name}") && !name)) return message.text || "";
    return words.replace("{name}", name);
  }

  // --- storage: the host site's, so namespaced, and it may throw (disabled, full) ------------

  let memory = null; // the record when localStorage refuses it
  const MAX_PENDING = 200; // unacknowledged messages kept: more is not a visitor typing
  const text = (value) => (typeof value === "string" ? value : null);
  const validItem = (item) => item && typeof item === "object" && typeof item.id === "string" &&
    item.id.length > 0 && item.id.length <= 100 && typeof item.text === "string" &&
    item.text.length <= MAX_TEXT && (item.payload === undefined || typeof item.payload === "string");
  /** Keep of a stored record only its fields, each of its type: the site's storage is anyone's. */
  function sane(raw) {
    if (!raw || typeof raw !== "object" || Array.isArray(raw)) return null;
    const seen = Number.isSafeInteger(raw.seen) && raw.seen > 0 ? raw.seen : 0;
    const pending = Array.isArray(raw.pending) ? raw.pending.filter(validItem).slice(-MAX_PENDING) : [];
    return { token: text(raw.token), conversation: text(raw.conversation), user: text(raw.user), seen,
             pending: pending.map(({ id, text: said, payload }) => (payload === undefined
               ? { id, text: said } : { id, text: said, payload })),
             rated: text(raw.rated) };
  }
  const local = {
    read() {
      try {
        const raw = localStorage.getItem(KEY);
        return raw ? sane(JSON.parse(raw)) : memory;
      } catch {
        return memory;
      }
    },
    write(record) {
      memory = record;
      try {
        localStorage.setItem(KEY, JSON.stringify(record));
      } catch {
        // private mode or a full quota: this tab goes on from memory
      }
    },
    remove() {
      memory = null;
      try {
        localStorage.removeItem(KEY);
      } catch {
        // nothing was stored
      }
    },
  };
  const tab = { // per tab: was the panel open before a reload
    get open() {
      try { return sessionStorage.getItem(KEY) === "open"; } catch { return false; }
    },
    set open(value) {
      try {
        if (value) sessionStorage.setItem(KEY, "open"); else sessionStorage.removeItem(KEY);
      } catch {
        // no session storage: the panel starts closed after a reload
      }
    },
  };

  const settings = window.ConciergeSettings || {};
  const USER = settings.user_id ? String(settings.user_id) : null;
  // { token, conversation, user, seen (seq read), pending: [{id, text, payload}], rated }
  let record = local.read();
  if (record && (record.user || null) !== USER) { // another signed-in person: not theirs
    local.remove();
    record = null;
  }

  // --- DOM without HTML ------------------------------------------------------------------------

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name === "on") for (const [kind, fn] of Object.entries(value)) node.addEventListener(kind, fn);
      else if (value === true) node.setAttribute(name, "");
      else if (value !== false && value != null) node.setAttribute(name, value);
    }
    node.append(...children.filter((child) => child != null));
    return node;
  }

  function icon(path) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    const shape = document.createElementNS(ns, "path");
    shape.setAttribute("d", path);
    svg.append(shape);
    return svg;
  }

  /** The text, with http(s) URLs as links that open apart from the host page. */
  function linkified(text) {
    const out = document.createDocumentFragment();
    let at = 0;
    for (const match of text.matchAll(/\bhttps?:\/\/[^\s<>"]+/g)) {
      const url = match[0].replace(/[.,;:!?)\]]+$/, "");
      let href = null;
      try {
        const parsed = new URL(url);
        if (parsed.protocol === "http:" || parsed.protocol === "https:") href = parsed.href;
      } catch {
        href = null;
      }
      if (!href) continue;
      out.append(text.slice(at, match.index));
      out.append(el("a", { href, target: "_blank", rel: "noopener noreferrer", text: url }));
      at = match.index + url.length;
    }
    out.append(text.slice(at));
    return out;
  }

  const TITLE = data.title || document.title || "Chat";
  const host = el("concierge-chat");
  const root = host.attachShadow({ mode: "open" });
  const frame = el("div", { class: "root " + (data.position === "left" ? "left" : "right"), hidden: true });
  const style = el("link", { rel: "stylesheet", href: CSS_URL });
  style.addEventListener("load", () => { frame.hidden = false; });
  style.addEventListener("error", () => {
    console.warn("Concierge: widget.css did not load; allow " + ORIGIN + " in style-src");
  });

  const badge = el("span", { class: "badge", "aria-hidden": "true", hidden: true });
  const launcher = el("button", {
    type: "button", class: "launcher", "aria-label": L.launcher, "aria-expanded": "false",
    "aria-controls": "concierge-panel", "aria-haspopup": "dialog",
  }, icon("M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4H4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z"),
  icon("M6 9l6 6 6-6"), badge);
  const unreadStatus = el("p", { class: "sr unread", role: "status" });

  const heading = el("h2", { id: "concierge-title", text: TITLE });
  const subtitle = el("p", { class: "sub", text: L.subBot });
  const closeButton = el("button", { type: "button", class: "icon", "aria-label": L.close },
    icon("M6 6l12 12M18 6L6 18"));
  const endButton = el("button", { type: "button", class: "end", text: L.end, hidden: true });
  const endYes = el("button", { type: "button", class: "primary", text: L.endYes });
  const endNo = el("button", { type: "button", class: "plain", text: L.endNo });
  const confirmEnd = el("div", { class: "confirm", role: "group", "aria-labelledby": "concierge-end",
    hidden: true }, el("p", { id: "concierge-end", text: L.endAsk }), endYes, endNo);
  const offlineText = el("span", { text: L.offline });
  const retryButton = el("button", { type: "button", class: "link", text: L.retry });
  const offline = el("div", { class: "banner", role: "status" }, offlineText, " ", retryButton);
  offline.hidden = true;
  const intro = data.greeting ? el("p", { class: "intro", text: data.greeting }) : null;
  const log = el("div", { class: "log", role: "log", "aria-label": L.messages, tabindex: "0" });
  const typingText = el("span", { class: "sr" });
  const typing = el("div", { class: "typing", hidden: true },
    el("span", { class: "dots", "aria-hidden": "true" }, el("i"), el("i"), el("i")), typingText);
  const queueText = el("p", { role: "status" });
  const leaveButton = el("button", { type: "button", class: "link", text: L.leave });
  const queue = el("div", { class: "queue", hidden: true }, queueText, leaveButton);
  const input = el("textarea", {
    id: "concierge-input", rows: "1", maxlength: String(MAX_TEXT), placeholder: L.placeholder,
    autocomplete: "off", enterkeyhint: "send",
  });
  const sendButton = el("button", { type: "submit", class: "send", "aria-label": L.send },
    icon("M3 20l18-8L3 4v6l12 2-12 2z"));
  const composer = el("form", { class: "composer" },
    el("label", { class: "sr", for: "concierge-input", text: L.message }), input, sendButton);
  const stars = el("div", { class: "stars", role: "group", "aria-labelledby": "concierge-rate" });
  for (let n = 1; n <= 5; n += 1) {
    stars.append(el("button", {
      type: "button", class: "star", "aria-label": say("star", { n }), "aria-pressed": "false",
      "data-score": String(n), on: { click: () => rate(n) },
    }, icon("M12 3l2.8 5.7 6.2.9-4.5 4.4 1 6.2L12 17.3 6.5 20.2l1-6.2L3 9.6l6.2-.9z")));
  }
  const thanks = el("p", { class: "thanks", text: L.thanks, hidden: true });
  const commentInput = el("textarea", { id: "concierge-comment", rows: "2", maxlength: String(MAX_TEXT) });
  const commentForm = el("form", { class: "comment", hidden: true },
    el("label", { for: "concierge-comment", text: L.comment }), commentInput,
    el("button", { type: "submit", class: "plain", text: L.sendComment }));
  const againButton = el("button", { type: "button", class: "primary", text: L.again });
  const ended = el("div", { class: "ended", hidden: true },
    el("p", { class: "notice", text: L.ended }),
    el("p", { id: "concierge-rate", text: L.rate }), stars, thanks, commentForm, againButton);
  const panel = el("section", {
    class: "panel", id: "concierge-panel", role: "dialog", "aria-labelledby": "concierge-title",
    hidden: true,
  }, el("header", { class: "head" }, el("div", { class: "who" }, heading, subtitle), endButton,
    closeButton), confirmEnd, offline, intro, log, typing, queue, ended, composer);
  frame.append(panel, launcher, unreadStatus);
  root.append(style, frame);

  const accent = /^#(?:[0-9a-f]{3}){1,2}$/i.test(data.color || "") ? data.color : null;
  if (accent) { // CSSOM properties pass a strict style-src; a style attribute would not
    host.style.setProperty("--accent", accent);
    host.style.setProperty("--on-accent", contrastInk(accent));
  }

  function contrastInk(hex) {
    const full = hex.length === 4 ? hex.replace(/\w/g, (c) => c + c) : hex;
    const [r, g, b] = [1, 3, 5].map((i) => {
      const c = parseInt(full.slice(i, i + 2), 16) / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    const light = 0.2126 * r + 0.7152 * g + 0.0722 * b;
    return 1.05 / (light + 0.05) >= 4.5 ? "#fff" : "#111"; // white only where it reads (WCAG AA)
  }

  // --- the conversation as this tab shows it -------------------------------------------------

  let ws = null;
  let wanted = false; // a conversation exists or the visitor asked for one: stay connected
  let stopped = false; // the server refused us for good (a policy close)
  let attempt = 0;
  let retryTimer = null;
  let pingTimer = null;
  let probeTimer = null;
  let awaitingPong = false;
  let suspect = false; // the browser said offline: the socket may be dead, a `ping` tells
  let score = 0; // the rating given in this tab, for a comment that follows it
  let replaying = false; // between a welcome and its status: the replay of what we missed
  let lastSeq = 0;
  let status = "bot";
  let agentName = null;
  let lastWho = null; // the sender of the last message shown, to name only a new one
  let unread = 0;
  let typingTimer = null;
  let typingSent = 0;
  let typingIdle = null;
  let audio = null;
  const bubbles = new Map(); // client id -> the visitor's bubble, for its ack and echo

  const pending = () => (record && record.pending) || [];
  // Re-sending what the server has not acknowledged goes one message at a time, each after the
  // last one's ack: a flood limit that drops one can then never store a later one before it.
  let resending = null; // the id of the message re-sent and not yet answered
  let resendTimer = null;

  function resend() {
    clearTimeout(resendTimer);
    resendTimer = null;
    const next = pending()[0];
    resending = next && connected() ? next.id : null;
    if (resending) transmit(next);
  }

  function resendSoon() { // one timer, however many errors ask for it
    resending = null;
    if (!resendTimer) resendTimer = setTimeout(resend, 1000);
  }

  function answered(id) { // an ack or an error naming it: the next one may go
    if (resending && id === resending) resend();
  }

  function save(changes) {
    record = { token: null, conversation: null, user: USER, seen: 0, pending: [], ...record, ...changes };
    local.write(record);
  }

  function resetTranscript() {
    log.replaceChildren();
    bubbles.clear();
    lastSeq = 0;
    lastWho = null;
    unread = 0;
    score = 0;
    commentForm.hidden = true;
    thanks.textContent = L.thanks;
    showUnread();
    showStatus({ status: "bot" });
  }

  /** Forget the conversation, in every tab; begin a new one now if `now` (the panel is open). */
  function fresh(now) {
    record = null;
    // Other tabs hear of it: a removed record (a sign-out) closes their panel; an empty one
    // (a new conversation begins here) makes them wait for it, and follow.
    if (now) save({}); else local.remove();
    drop();
    resetTranscript();
    wanted = now;
    stopped = false;
    attempt = 0;
    connect();
  }

  function isOpen() {
    return !panel.hidden;
  }

  // --- messages --------------------------------------------------------------------------------

  let stick = true; // the visitor is at the newest message
  let shown = 0; // the log's height when last laid out
  log.addEventListener("scroll", () => {
    stick = log.scrollHeight - log.scrollTop - (shown || log.clientHeight) < 60;
  });
  if (window.ResizeObserver) { // the rating, a banner, the keyboard: the log shrinks or grows
    new ResizeObserver(() => {
      if (log.clientHeight && stick) log.scrollTop = log.scrollHeight;
      shown = log.clientHeight;
    }).observe(log);
  }

  function place(node, scroll) { // before the visitor's bubbles still waiting for their ack
    const atEnd = log.scrollHeight - log.scrollTop - log.clientHeight < 60;
    log.insertBefore(node, log.querySelector(".msg.pending"));
    if (atEnd || scroll) log.scrollTop = log.scrollHeight;
  }

  function showMessage(message) {
    if (typeof message.seq !== "number" || message.seq <= lastSeq) return; // seen already
    lastSeq = message.seq;
    const from = message.from;
    if (from === "visitor") {
      dropReplies();
      const known = message.id && bubbles.get(message.id);
      if (known) { // ours, stored: it keeps its place
        delivered(known, message.id);
        known.dataset.seq = String(message.seq);
        bubbles.delete(message.id);
        return;
      }
      place(bubble(message), true);
      return;
    }
    if (from === "system") {
      place(el("p", { class: "msg system", "data-seq": String(message.seq), text: systemText(message) }));
      lastWho = null;
    } else {
      place(bubble(message));
      stopTyping();
    }
    if (!isOpen() && message.seq > ((record && record.seen) || 0)) {
      unread += 1;
      showUnread();
      if (!replaying) beep();
    }
    if (isOpen() && !replaying) markSeen();
  }

  function bubble(message) {
    const from = ["bot", "agent", "visitor"].includes(message.from) ? message.from : "bot";
    const name = from === "agent" ? message.name || L.agent : from === "bot" ? L.bot : L.you;
    const who = from + ":" + name;
    const node = el("div", { class: "msg " + from });
    if (message.seq) node.dataset.seq = String(message.seq);
    // A name above a new speaker's first message; screen readers hear who speaks every time.
    const hide = who === lastWho || from === "visitor";
    if (hide) node.append(el("span", { class: "sr", text: name + ": " }));
    else node.append(el("span", { class: "name", text: name }), el("span", { class: "sr", text: ": " }));
    lastWho = who;
    node.append(el("p", { class: "text" }, linkified(String(message.text || ""))));
    if (Array.isArray(message.buttons) && message.buttons.length && status !== "closed") {
      const replies = el("div", { class: "replies" });
      for (const choice of message.buttons) {
        const title = String(choice.title || "");
        replies.append(el("button", {
          type: "button", class: "reply", text: title,
          on: { click: () => send(title, choice.payload) },
        }));
      }
      node.append(replies);
    }
    return node;
  }

  function dropReplies() {
    const focused = root.activeElement && root.activeElement.classList.contains("reply");
    for (const replies of log.querySelectorAll(".replies")) replies.remove();
    if (focused) input.focus();
  }

  function delivered(node, id) { // acked or echoed; the map keeps it until its echo
    node.classList.remove("pending");
    for (const older of log.querySelectorAll(".state[data-state=sent]")) {
      if (!node.contains(older)) older.remove(); // "Sent" under the latest only
    }
    setState(node, "sent");
    if (pending().some((item) => item.id === id)) save({ pending: pending().filter((item) => item.id !== id) });
  }

  function setState(node, state) {
    const label = node.querySelector(".state");
    if (!label) return;
    label.dataset.state = state;
    label.textContent = state === "sending" ? (connected() ? L.sending : L.queuedSend)
      : state === "sent" ? L.sent : L.failed;
  }

  /** Show a message of ours that waits for its ack: at the end, until it is stored. */
  function showPending(item) {
    const node = bubble({ from: "visitor", text: item.text });
    node.classList.add("pending");
    node.append(el("span", { class: "state", "aria-hidden": "true" }));
    bubbles.set(item.id, node);
    log.append(node);
    setState(node, "sending");
    log.scrollTop = log.scrollHeight;
  }

  function refreshPendingLabels() {
    for (const node of bubbles.values()) if (node.classList.contains("pending")) setState(node, "sending");
  }

  // Mark messages not sent: the one an error names by its id, else every one still unacked.
  function failPending(only) {
    for (const [id, node] of bubbles) {
      if (!node.classList.contains("pending") || (only && id !== only)) continue;
      node.classList.remove("pending");
      setState(node, "failed");
      bubbles.delete(id);
    }
    const kept = only ? pending().filter((item) => item.id !== only) : [];
    if (kept.length !== pending().length) save({ pending: kept });
  }

  function newId() {
    const bytes = crypto.getRandomValues(new Uint8Array(9));
    return "w_" + Date.now().toString(36) + "_" + [...bytes].map((b) => b.toString(36)).join("");
  }

  function send(text, payload) {
    text = String(text).slice(0, MAX_TEXT);
    if (!text.trim() && payload === undefined) return;
    const item = { id: newId(), text };
    if (payload !== undefined && payload !== null) item.payload = String(payload);
    dropReplies();
    save({ pending: [...pending(), item] });
    showPending(item);
    typingOff();
    if (!replaying && !resending && !resendTimer) transmit(item);
    if (status === "bot" && connected()) showTyping(null);
    if (!offline.hidden) showOffline(true);
    wanted = true;
    connect();
  }

  function transmit(item) {
    const message = { type: "message", id: item.id, text: item.text };
    if (item.payload !== undefined) message.payload = item.payload;
    frameOut(message);
  }

  // --- status, queue, typing -------------------------------------------------------------------

  function showStatus(frame) {
    status = frame.status;
    const closed = status === "closed";
    if (status === "agent" && frame.agent && frame.agent.name) agentName = String(frame.agent.name);
    subtitle.textContent = closed ? L.subClosed : status === "queued" ? L.subQueued
      : status === "agent" ? agentName || L.agent : L.subBot;
    queue.hidden = status !== "queued";
    if (status === "queued") {
      const n = frame.position;
      const parts = [typeof n === "number" ? (n === 1 ? L.lineNext : say("line", { n })) : L.waiting];
      if (typeof frame.wait_s === "number") {
        parts.push(frame.wait_s < 60 ? L.waitShort : say("wait", { m: Math.round(frame.wait_s / 60) }));
      }
      const text = parts.join(" ");
      if (queueText.textContent !== text) queueText.textContent = text;
    }
    const wasClosed = !ended.hidden;
    const focused = root.activeElement;
    ended.hidden = !closed;
    composer.hidden = closed;
    endButton.hidden = closed || !(record && record.conversation);
    if (closed) {
      confirmEnd.hidden = true;
      stopTyping();
      dropReplies();
      failPending();
      const rated = record && record.rated === record.conversation;
      stars.hidden = rated;
      root.getElementById("concierge-rate").hidden = rated;
      thanks.hidden = !rated;
      if (!rated) commentForm.hidden = true;
      if (!wasClosed && focused && (focused === input || !focused.getClientRects().length)) againButton.focus();
    }
  }

  function showTyping(name) {
    typingText.textContent = say("typing", { name: name || L.bot });
    typing.hidden = false;
    clearTimeout(typingTimer);
    typingTimer = setTimeout(stopTyping, TYPING_SHOWN_MS);
  }

  function stopTyping() {
    clearTimeout(typingTimer);
    typing.hidden = true;
  }

  function typingOn() {
    if (status !== "agent") return; // only a person reads it
    clearTimeout(typingIdle);
    typingIdle = setTimeout(typingOff, TYPING_IDLE_MS);
    if (Date.now() - typingSent > TYPING_IDLE_MS / 2) {
      typingSent = Date.now();
      frameOut({ type: "typing", active: true });
    }
  }

  function typingOff() {
    clearTimeout(typingIdle);
    if (typingSent) frameOut({ type: "typing", active: false });
    typingSent = 0;
  }

  function rate(n) {
    if (!frameOut({ type: "rating", score: n })) return; // offline: the banner says so
    score = n;
    for (const star of stars.children) {
      star.setAttribute("aria-pressed", String(Number(star.dataset.score) <= n));
    }
    save({ rated: record.conversation });
    stars.hidden = true;
    root.getElementById("concierge-rate").hidden = true;
    thanks.hidden = false;
    commentForm.hidden = false; // optional: the rating is stored already, the comment joins it
    commentInput.focus();
  }

  function sendComment(event) {
    event.preventDefault();
    const comment = commentInput.value.trim().slice(0, MAX_TEXT);
    if (!comment || !score) return;
    if (!frameOut({ type: "rating", score, comment })) return;
    commentInput.value = "";
    commentForm.hidden = true;
    thanks.textContent = L.thanksComment;
    againButton.focus();
  }

  function askEnd() {
    confirmEnd.hidden = false;
    endNo.focus();
  }

  function keepOn() {
    confirmEnd.hidden = true;
    endButton.focus();
  }

  function endNow() {
    if (!frameOut({ type: "end" })) return; // offline: the banner says so; ask again later
    confirmEnd.hidden = true;
    input.focus(); // until the `closed` status moves it to what comes next
  }

  function startAgain() {
    fresh(true); // other tabs hear of it and let go of the old conversation too
    input.focus();
  }

  // --- unread, sound ---------------------------------------------------------------------------

  function showUnread() {
    badge.hidden = unread === 0;
    badge.textContent = unread > 9 ? "9+" : String(unread);
    const text = unread === 0 ? "" : unread === 1 ? L.unread1 : say("unreadN", { n: unread });
    if (unreadStatus.textContent !== text) unreadStatus.textContent = text;
  }

  function markSeen() {
    unread = 0;
    showUnread();
    if (record && lastSeq > (record.seen || 0)) save({ seen: lastSeq });
  }

  function beep() { // only with data-sound, and only once a click allowed audio
    if (!audio || audio.state !== "running") return;
    const tone = audio.createOscillator();
    const gain = audio.createGain();
    tone.frequency.value = 880;
    gain.gain.setValueAtTime(0.08, audio.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.0001, audio.currentTime + 0.25);
    tone.connect(gain).connect(audio.destination);
    tone.start();
    tone.stop(audio.currentTime + 0.25);
  }

  function allowSound() {
    if (data.sound !== "on" || !window.AudioContext) return;
    audio = audio || new AudioContext();
    if (audio.state === "suspended") audio.resume();
  }

  // --- the socket ------------------------------------------------------------------------------

  const connected = () => Boolean(ws && ws.readyState === 1 && !suspect && navigator.onLine !== false);

  function frameOut(frame) {
    if (!ws || ws.readyState !== 1) return false;
    try {
      ws.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }

  function connect() {
    if (!wanted || stopped || ws) return;
    clearTimeout(retryTimer);
    retryTimer = null;
    let socket;
    try {
      socket = new WebSocket(SOCKET_URL);
    } catch {
      retry(0);
      return;
    }
    ws = socket;
    socket.addEventListener("open", () => {
      if (socket !== ws) return;
      const hello = { type: "hello", token: (record && record.token) || null, last_seq: lastSeq,
                      page: { url: location.href, title: document.title, referrer: document.referrer },
                      locale: LOCALE.slice(0, 35) };
      if (FLOW) hello.flow = FLOW;
      if (USER || settings.name || settings.email) {
        hello.identity = {};
        for (const [field, from] of [["user_id", "user_id"], ["name", "name"], ["email", "email"], ["hash", "user_hash"]]) {
          if (settings[from]) hello.identity[field] = String(settings[from]);
        }
      }
      frameOut(hello);
      startPinging();
    });
    socket.addEventListener("message", (event) => {
      if (socket !== ws) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame && typeof frame.type === "string") receive(frame);
    });
    socket.addEventListener("close", (event) => {
      if (socket !== ws) return; // one we dropped ourselves
      ws = null;
      suspect = false;
      stopPinging();
      replaying = false;
      if (event.code === CLOSE_POLICY) { // this site may not use the chat: say so, stop
        stopped = true;
        offlineText.textContent = L.unavailable;
        retryButton.hidden = true;
        offline.hidden = false;
        return;
      }
      // re-sending it would only fail again: the one re-sent alone when that is known
      if (event.code === CLOSE_TOO_BIG) failPending(resending || undefined);
      resending = null;
      retry(event.code === CLOSE_TRY_LATER ? 2 : 0);
    });
  }

  function retry(atLeast) {
    stopTyping(); // nobody's typing reaches us now
    showOffline(true);
    refreshPendingLabels();
    if (!wanted || stopped) return;
    attempt = Math.max(attempt, atLeast);
    const ceiling = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** attempt);
    const delay = Math.round(ceiling / 2 + Math.random() * ceiling / 2); // jitter: no herd
    attempt += 1;
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, delay);
  }

  function drop() {
    const socket = ws;
    ws = null;
    suspect = false;
    clearTimeout(retryTimer);
    stopPinging();
    replaying = false;
    if (socket) {
      try {
        socket.close(1000, "bye");
      } catch {
        // it never opened
      }
    }
  }

  /** Reconnect now if down; if up, check that the socket still answers. */
  function nudge() {
    if (!wanted || stopped) return;
    if (suspect) {
      reconnectNow();
    } else if (!ws) {
      attempt = 0;
      connect();
    } else if (ws.readyState === 1) {
      probe();
    }
  }

  function reconnectNow() {
    drop();
    attempt = 0;
    connect();
  }

  /** The browser says the network is gone: say so now, and find out whether the socket lives. */
  function wentOffline() {
    if (!wanted || stopped) return;
    stopTyping();
    if (ws && ws.readyState === 1) {
      suspect = true;
      probe();
    }
    showOffline(true);
    refreshPendingLabels();
  }

  function probe() {
    if (!frameOut({ type: "ping" })) return;
    awaitingPong = true;
    clearTimeout(probeTimer);
    probeTimer = setTimeout(() => { if (awaitingPong) reconnectNow(); }, PROBE_MS);
  }

  function startPinging() {
    stopPinging();
    pingTimer = setInterval(() => {
      if (awaitingPong) reconnectNow();
      else if (frameOut({ type: "ping" })) awaitingPong = true;
    }, PING_EVERY_MS);
  }

  function stopPinging() {
    clearInterval(pingTimer);
    clearTimeout(probeTimer);
    awaitingPong = false;
  }

  function showOffline(down) {
    if (stopped) return;
    offlineText.textContent = L.offline + " " + (pending().length ? L.offlineHint : "");
    offline.hidden = !down;
  }

  function receive(frame) {
    switch (frame.type) {
      case "welcome":
        attempt = 0;
        suspect = false;
        showOffline(false);
        if (record && record.conversation && record.conversation !== frame.conversation) {
          // the old one is gone (expired, or a Redis without it): begin afresh, in every tab
          failPending();
          resetTranscript();
        }
        save({ token: frame.token, conversation: frame.conversation });
        replaying = true;
        break;
      case "message":
        showMessage(frame);
        break;
      case "ack": {
        const node = bubbles.get(frame.id);
        if (node) delivered(node, frame.id);
        else if (pending().some((item) => item.id === frame.id)) {
          save({ pending: pending().filter((item) => item.id !== frame.id) });
        }
        answered(frame.id);
        break;
      }
      case "status":
        showStatus(frame);
        if (replaying) { // the replay is over: now what is still unacknowledged, same ids
          replaying = false;
          if (isOpen()) markSeen();
          refreshPendingLabels();
          resend();
        }
        break;
      case "typing":
        if (frame.from === "agent") {
          if (frame.active) showTyping(agentName || L.agent);
          else stopTyping();
        }
        break;
      case "pong":
        awaitingPong = false;
        clearTimeout(probeTimer);
        if (suspect) { // it answers after all
          suspect = false;
          showOffline(false);
          refreshPendingLabels();
        }
        break;
      case "error":
        if (frame.code === "rate_limited" || frame.code === "unavailable") {
          resendSoon();
        } else if (frame.code === "too_long") {
          failPending(frame.id);
          subtitle.textContent = L.full;
          answered(frame.id);
        } else if ((frame.code === "conflict" || frame.code === "bad_frame") &&
                   frame.request === "message") {
          failPending(frame.id); // sent as it closed (its notice follows), or never sendable
          answered(frame.id);
        } else if (frame.code === "forbidden") {
          console.warn("Concierge: " + frame.message);
        }
        break;
      default: // a frame this version does not know: fine
    }
  }

  // --- the panel -------------------------------------------------------------------------------

  function open(focus = true) {
    if (!stopped) wanted = true;
    panel.hidden = false;
    launcher.setAttribute("aria-expanded", "true");
    frame.classList.add("opened");
    tab.open = true;
    followViewport();
    modal();
    connect();
    markSeen();
    log.scrollTop = log.scrollHeight;
    stick = true;
    if (focus) (composer.hidden ? againButton : input).focus();
  }

  function close(focus = true) {
    if (panel.hidden) return;
    panel.hidden = true;
    launcher.setAttribute("aria-expanded", "false");
    frame.classList.remove("opened");
    tab.open = false;
    if (focus) launcher.focus();
  }

  const small = window.matchMedia("(max-width: 600px), (max-height: 500px)");

  function modal() { // full screen on a phone: modal, focus kept inside; else a plain dialog
    panel.setAttribute("aria-modal", String(small.matches));
  }

  function followViewport() { // the on-screen keyboard shrinks the visual viewport only
    const view = window.visualViewport;
    if (!view || panel.hidden) return;
    host.style.setProperty("--vv-top", view.offsetTop + "px");
    host.style.setProperty("--vv-height", view.height + "px");
  }

  function trapFocus(event) {
    if (event.key !== "Tab" || !small.matches) return;
    const focusable = [...panel.querySelectorAll("button, textarea, a[href], [tabindex='0']")]
      .filter((node) => !node.disabled && node.getClientRects().length);
    const first = focusable[0];
    const last = focusable[focusable.length - 1];
    if (event.shiftKey && root.activeElement === first) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && root.activeElement === last) {
      event.preventDefault();
      first.focus();
    }
  }

  launcher.addEventListener("click", () => {
    allowSound();
    if (isOpen()) close(); else open();
  });
  closeButton.addEventListener("click", close);
  panel.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      if (confirmEnd.hidden) close(); else keepOn();
    } else {
      trapFocus(event);
    }
  });
  composer.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!input.value.trim()) return;
    send(input.value);
    input.value = "";
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      composer.requestSubmit();
    }
  });
  input.addEventListener("input", typingOn);
  input.addEventListener("blur", typingOff);
  input.addEventListener("focus", followViewport);
  leaveButton.addEventListener("click", () => { frameOut({ type: "leave_queue" }); input.focus(); });
  againButton.addEventListener("click", startAgain);
  commentForm.addEventListener("submit", sendComment);
  endButton.addEventListener("click", askEnd);
  endNo.addEventListener("click", keepOn);
  endYes.addEventListener("click", endNow);
  retryButton.addEventListener("click", reconnectNow);
  small.addEventListener("change", modal);
  if (window.visualViewport) {
    window.visualViewport.addEventListener("resize", followViewport);
    window.visualViewport.addEventListener("scroll", followViewport);
  }

  // Waking up: a phone unlocked, a laptop opened, the network back, a page from the bfcache.
  window.addEventListener("online", nudge);
  window.addEventListener("pageshow", nudge);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") nudge();
  });
  window.addEventListener("pagehide", (event) => { if (event.persisted) drop(); });
  window.addEventListener("offline", wentOffline);

  // Another tab of this site: a new conversation there, a read message, a message sent.
  window.addEventListener("storage", (event) => {
    if (event.key !== KEY && event.key !== null) return;
    let theirs = null; // what the other tab wrote; not our own copy in memory
    try {
      theirs = event.newValue ? sane(JSON.parse(event.newValue)) : null;
    } catch {
      theirs = null;
    }
    memory = theirs;
    const before = record;
    record = theirs;
    if (!theirs || theirs.conversation !== (before && before.conversation)) {
      drop();
      resetTranscript();
      wanted = Boolean(theirs && theirs.token);
      if (wanted) {
        attempt = 0;
        connect();
      } else if (!theirs && isOpen()) { // Concierge.reset(): a sign-out, nothing left to show
        close(false);
      }
      return;
    }
    if (!isOpen() && (theirs.seen || 0) >= lastSeq) { // read in the other tab
      unread = 0;
      showUnread();
    }
  });

  window.Concierge = window.Concierge || {
    open: () => open(),
    close: () => close(),
    /** Forget this browser's conversation (every tab's): call it when a signed-in visitor logs
     * out. An open panel begins a new conversation at once. */
    reset() {
      fresh(isOpen());
    },
  };

  function start() {
    document.body.append(host);
    for (const item of pending()) showPending(item);
    if (record && (record.token || pending().length)) { // resume it (for its unread count too)
      wanted = true;
      connect();
      if (tab.open) open(false);
    }
  }
  if (document.body) start(); else document.addEventListener("DOMContentLoaded", start);
})();
