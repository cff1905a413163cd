// The agent console: one page, one socket (/ws/agent, docs/protocol.md "The agent socket").
// Plain ES modules, no framework, no build step. Every text from a visitor or an agent is put
// in the page with textContent (web/static/console/dom.js), never as HTML.
//
// What the page shows is rebuilt from each `welcome` (after every reconnect), so it never
// shows a stale inbox; messages not yet acknowledged are sent again with the same ids, which
// the server stores once.

import { Alerts } from "./alerts.js";
import { CannedPicker, CannedStore, SessionEnded } from "./canned.js";
import { Connection } from "./connection.js";
import { el, fill, hiddenText, isTypingTarget } from "./dom.js";
import * as fmt from "./format.js";
import { messageNode, missedNode, renderTeam, renderVisitor } from "./panels.js";

const $ = (id) => document.getElementById(id);
const body = document.body;
const config = {
  agentId: body.dataset.agentId,
  agentName: body.dataset.agentName,
  role: body.dataset.agentRole,
  socketPath: body.dataset.socketPath || "/ws/agent",
  cannedUrl: body.dataset.cannedUrl,
  statesUrl: body.dataset.statesUrl,
  loginUrl: body.dataset.loginUrl || "/login",
  maxTextChars: Number(body.dataset.maxTextChars) || 4000,
};

const LAST_PAGE = 1_000_000_000; // `history` before this: the latest messages
const HISTORY_PAGE = 100;
const TYPING_IDLE_MS = 2_500; // no key for this long: typing stops
const TYPING_REFRESH_MS = 8_000; // while typing on, say so again this often
const VISITOR_TYPING_MS = 10_000; // a visitor's typing that is never switched off ends by itself
const ACK_WAIT_MS = 10_000; // no ack by then: the message is shown as not confirmed
const ANSWER_WAIT_MS = 10_000; // a transfer or close with no answer by then
const MISSED_REFRESH_MS = 30_000;
const MAX_TAGS = 20;
const MAX_TAG_CHARS = 50;
const SINGLE_KEYS = "concierge.console.single-keys";
const RECENT_TAGS = "concierge.console.tags";

const ui = {
  presence: $("presence"),
  connection: $("connection"),
  offline: $("offline"),
  offlineText: $("offline-text"),
  offlineCountdown: $("offline-countdown"),
  waiting: $("waiting"),
  waitingCount: $("waiting-count"),
  waitingEmpty: $("waiting-empty"),
  tabs: $("tabs"),
  tabsEmpty: $("tabs-empty"),
  mineCount: $("mine-count"),
  notice: $("notice"),
  conversationView: $("conversation-view"),
  missedView: $("missed-view"),
  teamView: $("team-view"),
  noConversation: $("no-conversation"),
  panel: $("conversation-panel"),
  title: $("conv-title"),
  status: $("conv-status"),
  transcript: $("transcript"),
  typing: $("typing"),
  composer: $("composer"),
  reply: $("reply"),
  replyLabel: $("reply-label"),
  send: $("send"),
  visitorHeading: $("visitor-heading"),
  visitorDetails: $("visitor-details"),
  missedList: $("missed-list"),
  missedEmpty: $("missed-empty"),
  reader: $("reader"),
  readerHeading: $("reader-heading"),
  readerState: $("reader-state"),
  readerMessages: $("reader-messages"),
  readerEarlier: $("reader-earlier"),
  readerFollowUp: $("reader-follow-up"),
  teamAgents: document.querySelector("#team-agents tbody"),
  teamQueues: document.querySelector("#team-queues tbody"),
  teamUpdated: $("team-updated"),
  viewButtons: {
    conversations: $("show-conversations"),
    missed: $("show-missed"),
    team: $("show-team"),
  },
};

const state = {
  agent: { id: config.agentId, name: config.agentName, role: config.role, queues: [] },
  presence: null,
  online: false, // a welcome came on the socket that is open now
  everWelcomed: false,
  conversations: new Map(), // id -> conversation (below)
  order: [], // the tabs, in the order they came
  active: null,
  waiting: new Map(), // id -> waiting item, with `since` (ms) for the local clock
  unviewed: new Set(), // assigned conversations whose tab was not looked at yet: they ring
  outbox: new Map(), // message id -> {id, cid, text, node, sentAt}: sent, not acknowledged
  drafts: new Map(), // conversation id -> what the agent had typed
  team: null,
  teamAt: null,
  colleagues: null, // who the agent may transfer to now (a `colleagues` frame)
  missed: [],
  view: "conversations",
  reader: null, // the missed conversation being read: {cid, item, messages, mode, done}
  pending: null, // {kind: accept|transfer|close, cid, timer}
  flowStates: new Map(), // flow id -> [state names]
  singleKeys: localStorage.getItem(SINGLE_KEYS) !== "off",
};

// --- the socket -------------------------------------------------------------------------------

// Same origin as the page, whatever scheme or host the server thinks it has (behind a proxy).
const socketPath = new URL(config.socketPath, location.href).pathname;
const socketUrl = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}${socketPath}`;
const connection = new Connection(socketUrl, {
  onFrame: handleFrame,
  onDown: connectionDown,
  onAlive: connectionAlive,
  onSessionEnded: sessionEnded,
});

function send(frame) {
  return connection.send(frame);
}

function sessionEnded() {
  connection.stop();
  location.assign(config.loginUrl);
}

let countdownTimer = null;

function connectionDown({ retryInMs }) {
  state.online = false;
  stopTyping();
  showConnection("offline");
  ui.offline.hidden = false;
  clearInterval(countdownTimer);
  const retryAt = Date.now() + (retryInMs || 0);
  const tick = () => {
    if (retryInMs === null) {
      ui.offlineCountdown.textContent = "Waiting for the network.";
      return;
    }
    const left = Math.ceil((retryAt - Date.now()) / 1000);
    ui.offlineCountdown.textContent = left > 0 ? `Next try in ${left} s.` : "Trying now…";
  };
  tick();
  countdownTimer = setInterval(tick, 1000);
  renderAll();
}

/** A socket suspected down (the browser went offline) answered a ping: it is up after all. */
function connectionAlive() {
  if (!state.everWelcomed) return;
  state.online = true;
  clearInterval(countdownTimer);
  ui.offline.hidden = true;
  showConnection("online");
  resendOutbox();
  renderAll();
}

function showConnection(kind) {
  ui.connection.dataset.state = kind;
  ui.connection.textContent = { online: "Online", offline: "Offline", connecting: "Connecting…" }[kind];
  ui.presence.disabled = kind !== "online";
}

function handleFrame(frame) {
  const handler = FRAMES[frame.type];
  if (handler) handler(frame);
}

const FRAMES = {
  welcome: onWelcome,
  presence: (frame) => setPresence(frame.status),
  queue: (frame) => applyQueue(frame.waiting),
  assigned: (frame) => onAssigned(frame.conversation),
  unassigned: (frame) => onUnassigned(frame.conversation, frame.reason),
  message: onMessage,
  typing: onTyping,
  status: onStatus,
  ack: onAck,
  history: onHistory,
  missed: (frame) => { state.missed = Array.isArray(frame.conversations) ? frame.conversations : []; renderMissed(); },
  team: (frame) => { state.team = frame; state.teamAt = new Date(); renderTeamView(); },
  colleagues: (frame) => {
    state.colleagues = Array.isArray(frame.agents) ? frame.agents : [];
    if (transferDialog.open) transferOptions();
  },
  error: onError,
};

function onWelcome(frame) {
  const first = !state.everWelcomed;
  state.everWelcomed = true;
  state.online = true;
  clearInterval(countdownTimer);
  ui.offline.hidden = true;
  showConnection("online");
  state.agent = { ...state.agent, ...(frame.agent || {}) };
  ui.viewButtons.team.hidden = state.agent.role !== "lead";
  setPresence(frame.presence);

  // Rebuild every conversation from the welcome: nothing of the old socket's view survives but
  // the unread counts, the drafts and what waits for an ack.
  const before = state.conversations;
  const activeBefore = state.active;
  if (activeBefore) state.drafts.set(activeBefore, ui.reply.value); // what the agent is typing stays
  state.conversations = new Map();
  state.order = [];
  ui.transcript.replaceChildren();
  for (const data of Array.isArray(frame.conversations) ? frame.conversations : []) {
    if (!data || !data.id) continue;
    const old = before.get(data.id);
    const conv = addConversation(data);
    // what the visitor wrote while the socket was down counts as unread too
    conv.unread = old ? old.unread + conv.visitorSeqs.filter((seq) => seq > old.lastSeq).length
      : first ? 0 : 1;
    if (!old && !first) state.unviewed.add(conv.id);
  }
  const pending = state.pending;
  if (pending && (pending.kind === "transfer" || pending.kind === "close") &&
      !state.conversations.has(pending.cid)) {
    settlePending(null); // it went while the socket was down: what was asked happened
  } else if (pending) {
    settlePending(null, "The connection was lost before the server answered; try again.");
  }
  for (const [cid, old] of before) {
    if (!state.conversations.has(cid)) {
      state.unviewed.delete(cid);
      state.drafts.delete(cid);
      say(`The conversation with ${fmt.visitorName(old.visitor, old.id)} is no longer yours.`);
    }
  }
  for (const cid of state.unviewed) if (!state.conversations.has(cid)) state.unviewed.delete(cid);
  resendOutbox();
  const next = state.conversations.has(activeBefore) ? activeBefore : state.order[0] ?? null;
  selectConversation(next, { keepDraft: false });
  applyQueue(Array.isArray(frame.queue) ? frame.queue : []);
  if (state.view === "missed") requestMissed();
  if (state.view === "team" && state.agent.role === "lead") send({ type: "team" });
  if (state.reader) requestReaderPage(true);
  renderAll();
}

// --- presence ---------------------------------------------------------------------------------

function setPresence(status) {
  state.presence = status;
  for (const input of ui.presence.querySelectorAll("input[name=presence]")) {
    input.checked = input.value === status;
  }
  body.dataset.presence = status || "";
  alerts.update();
}

ui.presence.addEventListener("change", (event) => {
  const status = event.target.value;
  if (!send({ type: "presence", status })) setPresence(state.presence);
});

// --- conversations ----------------------------------------------------------------------------

function addConversation(data) {
  const conv = {
    id: data.id,
    visitor: data.visitor || {},
    vars: data.vars || {},
    escalation: data.escalation || null,
    past: Array.isArray(data.past) ? data.past : [],
    flow: data.flow,
    state: data.state,
    status: data.status || "agent",
    statusFrame: null,
    messages: new Map(), // seq -> node
    lastSeq: 0,
    visitorSeqs: [],
    lastVisitorText: "",
    unread: 0,
    typing: false,
    typingTimer: null,
    list: el("ol", { class: "messages", hidden: true, data: { cid: data.id } }),
  };
  const transcript = Array.isArray(data.transcript) ? [...data.transcript] : [];
  transcript.sort((a, b) => (a.seq || 0) - (b.seq || 0));
  if (data.earlier) {
    // The transcript came with its last messages only: older ones a page at a time (`history`).
    conv.earlier = el("button", { class: "earlier", text: "Load earlier messages",
      attrs: { type: "button" }, on: { click: () => requestEarlier(conv) } });
    conv.list.append(el("li", { class: "earlier-row" }, conv.earlier));
  }
  for (const frame of transcript) addMessage(conv, frame, { live: false });
  state.conversations.set(conv.id, conv);
  if (!state.order.includes(conv.id)) state.order.push(conv.id);
  ui.transcript.append(conv.list);
  return conv;
}

function onAssigned(data) {
  if (!data || !data.id) return;
  const existing = state.conversations.get(data.id);
  if (existing) {
    existing.list.remove();
    state.conversations.delete(data.id);
  }
  const conv = addConversation(data);
  conv.unread = 1;
  const accepted = state.pending?.kind === "accept" && state.pending.cid === conv.id;
  if (accepted) {
    settlePending(null);
    showView("conversations");
  }
  state.waiting.delete(conv.id);
  if (accepted || state.active === null || state.active === conv.id) {
    selectConversation(conv.id, { focusReply: accepted });
  }
  if (!isViewed(conv)) {
    state.unviewed.add(conv.id);
    alerts.notify(`New conversation: ${fmt.visitorName(conv.visitor, conv.id)}`, conv.lastVisitorText || "",
      `assigned-${conv.id}`, () => openConversation(conv.id));
  }
  markViewed();
  renderAll();
}

function onUnassigned(cid, reason) {
  const conv = state.conversations.get(cid);
  if (!conv) return;
  const name = fmt.visitorName(conv.visitor, conv.id);
  const pending = state.pending && state.pending.cid === cid ? state.pending : null;
  const dropped = removeConversation(cid);
  const why = fmt.describe(fmt.UNASSIGNED, reason) || "it was taken away";
  const lost = dropped ? ` ${dropped} message${dropped === 1 ? " you sent was" : "s you sent were"} not delivered.` : "";
  if (pending && (pending.kind === "transfer" || pending.kind === "close")) {
    settlePending(null);
    say((pending.kind === "close" ? `Closed the conversation with ${name}.` :
      `Transferred the conversation with ${name}${pending.to ? ` to ${pending.to}` : ""}.`) + lost);
  } else {
    say(`The conversation with ${name} left your list: ${why}.${lost}`, lost ? "error" : "info");
  }
}

function removeConversation(cid) {
  const conv = state.conversations.get(cid);
  if (!conv) return;
  clearTimeout(conv.typingTimer);
  if (typingFor === cid) { // not ours any more: nothing to tell the server
    clearTimeout(typingIdle);
    typingFor = null;
  }
  conv.list.remove();
  state.conversations.delete(cid);
  state.unviewed.delete(cid);
  state.drafts.delete(cid);
  let dropped = 0;
  for (const [id, entry] of state.outbox) {
    if (entry.cid === cid) {
      state.outbox.delete(id);
      dropped += 1;
    }
  }
  const index = state.order.indexOf(cid);
  state.order.splice(index, 1);
  if (state.active === cid) {
    const next = state.order[Math.min(index, state.order.length - 1)] ?? null;
    const hadFocus = ui.panel.contains(document.activeElement);
    state.active = null;
    selectConversation(next, { keepDraft: false });
    if (hadFocus) (next ? ui.reply : ui.tabs.querySelector("[role=tab]") || $("main")).focus();
  }
  renderAll();
  return dropped;
}

function isViewed(conv) {
  return conv && state.view === "conversations" && state.active === conv.id &&
    document.visibilityState === "visible";
}

/** The open conversation is being looked at: its unread count goes, it stops ringing. */
function markViewed() {
  const conv = state.conversations.get(state.active);
  if (!isViewed(conv)) return;
  if (conv.unread || state.unviewed.has(conv.id)) {
    conv.unread = 0;
    state.unviewed.delete(conv.id);
    renderTabs();
    updateCounts();
  }
}

document.addEventListener("visibilitychange", () => markViewed());
window.addEventListener("focus", () => markViewed());

function selectConversation(cid, { focusReply = false, focusTab = false, keepDraft = true } = {}) {
  const previous = state.conversations.get(state.active);
  if (previous && previous.id !== cid && keepDraft) state.drafts.set(previous.id, ui.reply.value);
  if (previous && previous.id !== cid) stopTyping();
  picker.close();
  state.active = cid && state.conversations.has(cid) ? cid : null;
  for (const conv of state.conversations.values()) conv.list.hidden = conv.id !== state.active;
  const conv = state.conversations.get(state.active);
  if (conv && (!previous || previous.id !== conv.id || !keepDraft)) {
    ui.reply.value = state.drafts.get(conv.id) || "";
  }
  renderConversation();
  renderTabs();
  renderVisitorPanel();
  if (conv) scrollToEnd(true);
  markViewed();
  updateCounts();
  if (focusReply && conv) ui.reply.focus();
  if (focusTab) $(tabId(state.active))?.focus();
}

function openConversation(cid) {
  showView("conversations");
  selectConversation(cid, { focusReply: true });
}

function step(delta) {
  if (!state.order.length) return;
  showView("conversations");
  const index = state.order.indexOf(state.active);
  const next = index < 0 ? 0 : (index + delta + state.order.length) % state.order.length;
  selectConversation(state.order[next], { focusTab: !isTypingTarget(document.activeElement) });
}

function tabId(cid) {
  return `tab-${cid}`;
}

function renderTabs() {
  const nodes = state.order.map((cid) => {
    const conv = state.conversations.get(cid);
    const selected = cid === state.active;
    const name = fmt.visitorName(conv.visitor, conv.id);
    const ringing = state.unviewed.has(cid);
    return el("button", {
      class: `tab${selected ? " selected" : ""}${conv.status === "closed" ? " ended" : ""}${ringing ? " ringing" : ""}`,
      attrs: {
        type: "button", role: "tab", id: tabId(cid), "aria-selected": String(selected),
        "aria-controls": "conversation-panel", tabindex: selected ? "0" : "-1",
      },
      data: { cid },
      on: { click: () => { showView("conversations"); selectConversation(cid); } },
    },
    el("span", { class: "tab-name", text: name }),
    el("span", { class: "tab-sub", text: conv.typing ? "typing…" : conv.status === "closed" ? "closed" : conv.lastVisitorText }),
    conv.unread ? el("span", { class: "badge badge-unread" }, String(conv.unread), hiddenText(" unread")) : null);
  });
  const focused = document.activeElement?.getAttribute?.("role") === "tab" && ui.tabs.contains(document.activeElement);
  fill(ui.tabs, nodes);
  if (!state.active && nodes.length) nodes[0].setAttribute("tabindex", "0");
  if (focused) (ui.tabs.querySelector("[aria-selected=true]") || nodes[0])?.focus();
  ui.tabsEmpty.hidden = nodes.length > 0;
  ui.mineCount.textContent = String(nodes.length);
}

ui.tabs.addEventListener("keydown", (event) => {
  const tabs = [...ui.tabs.querySelectorAll("[role=tab]")];
  const index = tabs.indexOf(document.activeElement);
  if (index < 0) return;
  let next = null;
  if (event.key === "ArrowDown" || event.key === "ArrowRight") next = (index + 1) % tabs.length;
  else if (event.key === "ArrowUp" || event.key === "ArrowLeft") next = (index - 1 + tabs.length) % tabs.length;
  else if (event.key === "Home") next = 0;
  else if (event.key === "End") next = tabs.length - 1;
  if (next === null || event.altKey || event.ctrlKey || event.metaKey) return;
  event.preventDefault();
  event.stopPropagation();
  selectConversation(tabs[next].dataset.cid, { focusTab: true });
});

function renderConversation() {
  const conv = state.conversations.get(state.active);
  ui.panel.hidden = !conv;
  ui.noConversation.hidden = Boolean(conv);
  if (!conv) {
    ui.panel.removeAttribute("aria-labelledby");
    ui.typing.hidden = true;
    return;
  }
  ui.panel.setAttribute("aria-labelledby", tabId(conv.id));
  const name = fmt.visitorName(conv.visitor, conv.id);
  fill(ui.title, name, conv.visitor.email && conv.visitor.email !== name ?
    el("span", { class: "conv-email", text: ` ${conv.visitor.email}` }) : null);
  const parts = [fmt.describe(fmt.STATUS, conv.status)];
  if (conv.status === "closed" && conv.statusFrame?.reason) parts.push(fmt.describe(fmt.CLOSED_REASON, conv.statusFrame.reason));
  if (conv.escalation?.queue) parts.push(`queue ${conv.escalation.queue}`);
  if (conv.visitor.locale) parts.push(conv.visitor.locale);
  ui.status.textContent = parts.filter(Boolean).join(" · ");
  ui.replyLabel.textContent = `Reply to ${name}`;
  const closed = conv.status === "closed";
  ui.reply.disabled = closed;
  ui.send.disabled = closed;
  $("open-close").disabled = closed || !state.online;
  $("open-transfer").disabled = closed || !state.online;
  ui.typing.hidden = !conv.typing;
  ui.typing.textContent = conv.typing ? `${name} is typing…` : "";
}

// --- messages ---------------------------------------------------------------------------------

function nearEnd() {
  const t = ui.transcript;
  return t.scrollHeight - t.scrollTop - t.clientHeight < 60;
}

function scrollToEnd(force = false) {
  if (force || nearEnd()) ui.transcript.scrollTop = ui.transcript.scrollHeight;
}

function firstPending(conv) {
  return conv.list.querySelector("li.pending");
}

function addMessage(conv, frame, { live }) {
  const seq = Number(frame.seq) || 0;
  if (!seq || conv.messages.has(seq)) return null;
  const wasNearEnd = live && conv.id === state.active && nearEnd();
  let node = null;
  if (frame.from === "agent" && frame.id) {
    // our own message, sent from this page: its node is there already (acked or not)
    node = conv.list.querySelector(`li[data-id="${CSS.escape(frame.id)}"]:not([data-stored])`);
    if (node) markDelivered(node, seq, "Sent");
  }
  if (!node) {
    node = messageNode(frame, { visitor: conv.visitor, agentName: state.agent.name });
    if (frame.from === "agent") setDelivery(node, "Sent");
    // In seq order, ahead of our own messages that are still on their way.
    const later = [...conv.messages.entries()].filter(([other]) => other > seq).sort((a, b) => a[0] - b[0])[0];
    const before = later ? later[1] : firstPending(conv);
    conv.list.insertBefore(node, before || null);
  }
  conv.messages.set(seq, node);
  node.dataset.stored = "true";
  conv.lastSeq = Math.max(conv.lastSeq, seq);
  if (frame.from === "visitor") {
    if (seq === conv.lastSeq) conv.lastVisitorText = frame.text || ""; // not an earlier page's
    conv.visitorSeqs.push(seq);
  }
  if (frame.from === "system" && frame.status) conv.status = frame.status;
  if (live && conv.id === state.active) scrollToEnd(wasNearEnd);
  return node;
}

function setDelivery(node, text, retry = null) {
  const line = node.querySelector(".delivery");
  if (!line) return;
  fill(line, text, retry);
}

function markDelivered(node, seq, text) {
  node.classList.remove("pending", "unconfirmed");
  node.dataset.seq = String(seq);
  setDelivery(node, text);
}

function onMessage(frame) {
  const conv = state.conversations.get(frame.conversation);
  if (!conv) return;
  const added = addMessage(conv, frame, { live: true });
  if (!added) return;
  if (frame.from === "visitor") {
    conv.typing = false;
    clearTimeout(conv.typingTimer);
    if (!isViewed(conv)) {
      conv.unread += 1;
      if (!alerts.ringing) alerts.beep();
      alerts.notify(`${fmt.visitorName(conv.visitor, conv.id)} wrote`, frame.text || "", `message-${conv.id}`,
        () => openConversation(conv.id));
    }
  }
  if (conv.id === state.active) renderConversation();
  renderTabs();
  updateCounts();
}

function onTyping(frame) {
  const conv = state.conversations.get(frame.conversation);
  if (!conv || frame.from === "agent") return;
  conv.typing = Boolean(frame.active);
  clearTimeout(conv.typingTimer);
  if (conv.typing) {
    conv.typingTimer = setTimeout(() => { conv.typing = false; renderConversation(); renderTabs(); },
      VISITOR_TYPING_MS);
  }
  if (conv.id === state.active) renderConversation();
  renderTabs();
}

function onStatus(frame) {
  const conv = state.conversations.get(frame.conversation);
  if (!conv) return;
  conv.status = frame.status;
  conv.statusFrame = frame;
  if (conv.status === "closed" && conv.id === typingFor) stopTyping();
  if (conv.id === state.active) renderConversation();
  renderTabs();
}

// The server's `ack` names no conversation (see the report): message ids are unique, so the
// outbox finds it by id.
function onAck(frame) {
  const entry = state.outbox.get(frame.id);
  if (!entry) return;
  state.outbox.delete(frame.id);
  clearTimeout(entry.timer);
  if (entry.node.classList.contains("pending")) markDelivered(entry.node, frame.seq, "Sent");
}

function newMessageId() {
  const random = crypto.randomUUID ? crypto.randomUUID().replaceAll("-", "") :
    Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
  return `a_${random.slice(0, 24)}`;
}

function sendReply() {
  const conv = state.conversations.get(state.active);
  if (!conv || conv.status === "closed") return;
  const text = ui.reply.value.trim();
  if (!text) return;
  if (text.length > config.maxTextChars) {
    say(`The reply is ${text.length} characters long; a message holds at most ${config.maxTextChars}.`, "error");
    return;
  }
  const id = newMessageId();
  const node = messageNode({ from: "agent", name: state.agent.name, text, id, ts: new Date().toISOString() },
    { visitor: conv.visitor, agentName: state.agent.name });
  node.classList.add("pending");
  conv.list.append(node);
  const entry = { id, cid: conv.id, text, node, timer: null };
  state.outbox.set(id, entry);
  transmit(entry);
  ui.reply.value = "";
  state.drafts.delete(conv.id);
  stopTyping();
  scrollToEnd(true);
}

function transmit(entry) {
  clearTimeout(entry.timer);
  entry.node.classList.remove("unconfirmed");
  if (!send({ type: "message", conversation: entry.cid, id: entry.id, text: entry.text })) {
    setDelivery(entry.node, "Waiting for the connection…");
    return;
  }
  setDelivery(entry.node, "Sending…");
  entry.timer = setTimeout(() => {
    if (!state.outbox.has(entry.id)) return;
    entry.node.classList.add("unconfirmed");
    setDelivery(entry.node, "Not confirmed yet. ", el("button", {
      class: "link", text: "Send again", attrs: { type: "button" }, on: { click: () => transmit(entry) },
    }));
  }, ACK_WAIT_MS);
}

/** After a welcome: what was stored meanwhile is sent; the rest is sent again, same ids. */
function resendOutbox() {
  for (const [id, entry] of [...state.outbox]) {
    const conv = state.conversations.get(entry.cid);
    if (!conv) {
      state.outbox.delete(id);
      say("A message you sent could not be delivered: the conversation is no longer yours.", "error");
      continue;
    }
    const stored = conv.list.querySelector(`li[data-id="${CSS.escape(id)}"][data-stored]`);
    if (stored) {
      clearTimeout(entry.timer);
      state.outbox.delete(id);
      continue;
    }
    conv.list.append(entry.node);
    transmit(entry);
  }
}

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  sendReply();
});

ui.reply.addEventListener("keydown", (event) => {
  if (picker.handleKey(event)) {
    event.preventDefault();
    event.stopPropagation();
    return;
  }
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing && !event.altKey &&
      !event.ctrlKey && !event.metaKey) {
    event.preventDefault();
    sendReply();
  }
});

// Typing, debounced: on with the first key, again every few seconds while it goes on, off after
// a pause, a send, or leaving the conversation.
let typingFor = null;
let typingSentAt = 0;
let typingIdle = null;

ui.reply.addEventListener("input", () => {
  const conv = state.conversations.get(state.active);
  if (!conv || conv.status === "closed") return;
  if (!ui.reply.value.trim()) {
    stopTyping();
    return;
  }
  const now = Date.now();
  if (typingFor !== conv.id || now - typingSentAt > TYPING_REFRESH_MS) {
    if (typingFor && typingFor !== conv.id) stopTyping();
    if (send({ type: "typing", conversation: conv.id, active: true })) {
      typingFor = conv.id;
      typingSentAt = now;
    }
  }
  clearTimeout(typingIdle);
  typingIdle = setTimeout(stopTyping, TYPING_IDLE_MS);
});

ui.reply.addEventListener("blur", () => {
  clearTimeout(typingIdle);
  typingIdle = setTimeout(stopTyping, TYPING_IDLE_MS);
});

function stopTyping() {
  clearTimeout(typingIdle);
  if (typingFor) {
    const conv = state.conversations.get(typingFor);
    if (conv && conv.status !== "closed") send({ type: "typing", conversation: typingFor, active: false });
  }
  typingFor = null;
  typingSentAt = 0;
}

// --- the waiting list -------------------------------------------------------------------------

function applyQueue(items) {
  const now = Date.now();
  const fresh = new Map();
  for (const item of Array.isArray(items) ? items : []) {
    if (!item || !item.conversation || state.conversations.has(item.conversation)) continue;
    const old = state.waiting.get(item.conversation);
    const since = now - (Number(item.waited_s) || 0) * 1000;
    fresh.set(item.conversation, { ...item, since: old && Math.abs(old.since - since) < 2500 ? old.since : since });
    if (!old && state.everWelcomed && item.manual) {
      alerts.notify(`Waiting in ${item.queue}: ${fmt.visitorName(item.visitor, item.conversation)}`, item.preview || "",
        `waiting-${item.conversation}`, () => focusWaiting());
    }
  }
  state.waiting = fresh;
  renderWaiting();
  updateCounts();
}

function waitingSorted() {
  return [...state.waiting.values()].sort((a, b) => a.since - b.since); // oldest first
}

const waitingNodes = new Map(); // id -> li, kept so a focused Accept stays focused

function renderWaiting() {
  const items = waitingSorted();
  const focusedCid = ui.waiting.contains(document.activeElement) ?
    document.activeElement.closest("li")?.dataset.cid : null;
  const focusedIndex = items.findIndex((item) => item.conversation === focusedCid);
  for (const [cid, node] of waitingNodes) {
    if (!state.waiting.has(cid)) {
      node.remove();
      waitingNodes.delete(cid);
    }
  }
  items.forEach((item, index) => {
    const node = waitingNode(item);
    const old = waitingNodes.get(item.conversation);
    if (old) old.replaceWith(node);
    waitingNodes.set(item.conversation, node);
    const at = ui.waiting.children[index];
    if (at !== node) ui.waiting.insertBefore(node, at || null);
  });
  if (focusedCid) {
    const node = waitingNodes.get(focusedCid);
    if (node) node.querySelector("button")?.focus();
    else if (focusedIndex < 0 && document.activeElement === document.body) ui.waiting.focus();
  }
  ui.waitingEmpty.hidden = items.length > 0;
  ui.waitingCount.textContent = String(items.length);
  alerts.update();
}

function waitingNode(item) {
  const name = fmt.visitorName(item.visitor, item.conversation);
  const visitor = item.visitor || {};
  return el("li", { class: `waiting-item${item.manual ? " manual" : ""}`, data: { cid: item.conversation } },
    el("p", { class: "w-top" },
      el("span", { class: "w-name", text: name }),
      el("span", { class: "w-queue", text: item.queue }),
      item.manual ? el("span", { class: "badge badge-manual", text: "accept to take" }) : null,
      item.priority ? el("span", { class: "badge", text: `priority ${item.priority}` }) : null),
    visitor.email && visitor.email !== name ? el("p", { class: "w-email", text: visitor.email }) : null,
    visitor.verified ? el("p", { class: "w-verified", text: "Verified" }) : null,
    item.preview ? el("p", { class: "w-preview" }, el("q", { text: item.preview })) : null,
    el("p", { class: "w-time" }, "Waiting ", el("span", { class: "w-waited", data: { since: item.since }, text: fmt.duration((Date.now() - item.since) / 1000) })),
    el("button", {
      class: "accept",
      attrs: { type: "button", disabled: !state.online },
      on: { click: () => accept(item.conversation) },
    }, "Accept", hiddenText(` the chat with ${name}`)));
}

function tickWaiting() {
  const now = Date.now();
  for (const span of ui.waiting.querySelectorAll(".w-waited")) {
    span.textContent = fmt.duration((now - Number(span.dataset.since)) / 1000);
  }
}
setInterval(tickWaiting, 1000);

function accept(cid) {
  if (!state.waiting.has(cid)) return;
  if (!send({ type: "accept", conversation: cid })) {
    say("You are offline; accept once the connection is back.", "error");
    return;
  }
  startPending({ kind: "accept", cid });
}

function acceptOldest() {
  const oldest = waitingSorted()[0];
  if (oldest) accept(oldest.conversation);
  else say("Nobody is waiting.");
}

function focusWaiting() {
  showView("conversations");
  const first = ui.waiting.querySelector("button.accept");
  (first || ui.waiting).focus();
}

// --- answers to transfer, close and accept ----------------------------------------------------

function startPending(pending) {
  settlePending(null);
  pending.timer = setTimeout(() => settlePending(null, "No answer from the server yet; try again."), ANSWER_WAIT_MS);
  state.pending = pending;
}

function settlePending(error, message = null) {
  const pending = state.pending;
  if (!pending) return;
  clearTimeout(pending.timer);
  state.pending = null;
  const text = error ? error.message : message;
  if (pending.kind === "transfer") dialogDone(transferDialog, text);
  else if (pending.kind === "close") dialogDone(closeDialog, text);
  else if (text) say(text, "error");
}

function onError(frame) {
  const message = frame.message || frame.code || "the server refused that";
  if (state.pending) {
    settlePending({ message });
    return;
  }
  say(message, "error");
}

// --- views: conversations, missed, team -------------------------------------------------------

function showView(view) {
  if (view === "team" && state.agent.role !== "lead") return;
  state.view = view;
  ui.conversationView.hidden = view !== "conversations";
  ui.missedView.hidden = view !== "missed";
  ui.teamView.hidden = view !== "team";
  for (const [name, button] of Object.entries(ui.viewButtons)) {
    button.setAttribute("aria-pressed", String(name === view));
  }
  if (view === "missed") requestMissed();
  if (view === "team") send({ type: "team" });
  renderVisitorPanel();
  markViewed();
  updateCounts();
}

ui.viewButtons.conversations.addEventListener("click", () => showView("conversations"));
ui.viewButtons.missed.addEventListener("click", () => showView("missed"));
ui.viewButtons.team.addEventListener("click", () => showView("team"));
$("refresh-missed").addEventListener("click", () => requestMissed());

function requestMissed() {
  send({ type: "missed" });
}

// Nothing tells a socket that the missed list changed: while it is shown, it is asked again.
setInterval(() => {
  if (state.view === "missed" && state.online && document.visibilityState === "visible") requestMissed();
}, MISSED_REFRESH_MS);

function renderMissed() {
  const focused = document.activeElement;
  const focusCid = ui.missedList.contains(focused) ? focused.closest("li")?.dataset.cid : null;
  const focusAction = focused?.dataset?.action;
  const offline = !state.online;
  fill(ui.missedList, state.missed.map((item) => missedNode(item, {
    onRead: openReader, onFollowUp: (it) => send({ type: "follow_up", conversation: it.conversation }), offline,
  })));
  ui.missedEmpty.hidden = state.missed.length > 0 || Boolean(state.reader);
  if (focusCid) {
    const item = ui.missedList.querySelector(`li[data-cid="${CSS.escape(focusCid)}"]`);
    const target = item?.querySelector(`[data-action="${focusAction}"]`) || item?.querySelector("button");
    target?.focus();
  }
  if (state.reader) renderReader();
}

function openReader(item) {
  state.reader = { cid: item.conversation, item, messages: new Map(), mode: "latest", done: false };
  ui.missedList.hidden = true;
  ui.missedEmpty.hidden = true;
  ui.reader.hidden = false;
  ui.readerMessages.replaceChildren();
  requestReaderPage(true);
  renderReader();
  renderVisitorPanel();
  ui.readerHeading.setAttribute("tabindex", "-1");
  ui.readerHeading.focus();
}

function closeReader() {
  const cid = state.reader?.cid;
  state.reader = null;
  ui.reader.hidden = true;
  ui.missedList.hidden = false;
  renderMissed();
  renderVisitorPanel();
  const item = cid && ui.missedList.querySelector(`li[data-cid="${CSS.escape(cid)}"] [data-action="read"]`);
  (item || ui.missedList.querySelector("button") || $("refresh-missed")).focus();
}

function requestReaderPage(restart = false) {
  const reader = state.reader;
  if (!reader) return;
  if (restart) {
    reader.messages = new Map();
    reader.mode = "latest";
    reader.done = false;
  }
  let before = LAST_PAGE;
  if (reader.mode === "earlier") before = Math.min(...reader.messages.keys());
  if (reader.mode === "forward") before = (reader.messages.size ? Math.max(...reader.messages.keys()) : 0) + HISTORY_PAGE + 1;
  reader.waiting = true;
  send({ type: "history", conversation: reader.cid, before_seq: before });
}

/** Ask for the page of messages before the earliest one a conversation's tab shows. */
function requestEarlier(conv) {
  if (!conv.earlier || conv.earlier.disabled) return;
  const shown = [...conv.messages.keys()];
  conv.earlier.disabled = true;
  conv.earlier.textContent = "Loading…";
  send({ type: "history", conversation: conv.id, before_seq: shown.length ? Math.min(...shown) : LAST_PAGE });
}

/** A page of earlier messages for a conversation's tab: in their place, above the rest. */
function onEarlier(conv, messages) {
  const list = conv.list;
  const keep = list.scrollHeight - ui.transcript.scrollTop;
  for (const message of messages) if (message && message.seq) addMessage(conv, message, { live: false });
  const first = conv.messages.size ? Math.min(...conv.messages.keys()) : 1;
  if (first <= 1 || !messages.length) {
    conv.earlier.closest("li").remove();
    conv.earlier = null;
  } else {
    conv.earlier.disabled = false;
    conv.earlier.textContent = "Load earlier messages";
  }
  if (conv.id === state.active) ui.transcript.scrollTop = list.scrollHeight - keep; // stay put
}

function onHistory(frame) {
  const reader = state.reader;
  const conv = state.conversations.get(frame.conversation);
  if (conv && conv.earlier && (!reader || reader.cid !== frame.conversation)) {
    onEarlier(conv, Array.isArray(frame.messages) ? frame.messages : []);
    return;
  }
  if (!reader || frame.conversation !== reader.cid) return;
  const messages = Array.isArray(frame.messages) ? frame.messages : [];
  reader.waiting = false;
  if (reader.mode === "latest" && !messages.length && !reader.messages.size) {
    // The server answers an empty page for a before_seq past the end (see the report): read
    // the conversation from its start instead, a page at a time.
    reader.mode = "forward";
    requestReaderPage();
    return;
  }
  for (const message of messages) if (message && message.seq) reader.messages.set(Number(message.seq), message);
  if (reader.mode === "forward") {
    if (messages.length >= HISTORY_PAGE) {
      requestReaderPage();
    } else {
      reader.done = true;
    }
  } else {
    reader.mode = "earlier";
    const first = reader.messages.size ? Math.min(...reader.messages.keys()) : 1;
    reader.done = first <= 1 || !messages.length;
  }
  renderReader();
}

function renderReader() {
  const reader = state.reader;
  if (!reader) return;
  const item = state.missed.find((it) => it.conversation === reader.cid) || reader.item;
  reader.item = item;
  const name = fmt.visitorName(item.visitor, item.conversation);
  ui.readerHeading.textContent = `Conversation with ${name} (read only)`;
  const followed = item.followed_up;
  ui.readerFollowUp.hidden = Boolean(followed);
  ui.readerFollowUp.disabled = !state.online;
  const count = reader.messages.size;
  ui.readerState.textContent = reader.waiting && !count ? "Loading…" :
    `${count} message${count === 1 ? "" : "s"}${followed ? ` · followed up by ${followed.name || followed.id}` : ""}.`;
  ui.readerEarlier.hidden = reader.done || reader.mode !== "earlier";
  ui.readerEarlier.disabled = !state.online || Boolean(reader.waiting);
  const seqs = [...reader.messages.keys()].sort((a, b) => a - b);
  fill(ui.readerMessages, seqs.map((seq) => messageNode(reader.messages.get(seq),
    { visitor: item.visitor || {}, agentName: state.agent.name })));
}

ui.readerEarlier.addEventListener("click", () => requestReaderPage());
ui.readerFollowUp.addEventListener("click", () => {
  if (state.reader) send({ type: "follow_up", conversation: state.reader.cid });
});
$("reader-back").addEventListener("click", closeReader);

function renderTeamView() {
  if (!state.team) return;
  renderTeam(ui.teamAgents, ui.teamQueues, state.team);
  ui.teamUpdated.textContent = state.teamAt ? `Updated ${state.teamAt.toLocaleTimeString()}` : "";
}

// --- the visitor panel ------------------------------------------------------------------------

function renderVisitorPanel() {
  if (state.view === "missed" && state.reader) {
    const item = state.reader.item;
    renderVisitor(ui.visitorDetails, ui.visitorHeading, { visitor: item.visitor, vars: item.vars, escalation: item.queue ? { queue: item.queue } : null });
    return;
  }
  const conv = state.view === "conversations" ? state.conversations.get(state.active) : null;
  renderVisitor(ui.visitorDetails, ui.visitorHeading, conv || null);
}

// --- counts, title, ringing -------------------------------------------------------------------

function updateCounts() {
  let unread = 0;
  for (const conv of state.conversations.values()) unread += conv.unread;
  alerts.setTitleCount(unread + state.waiting.size);
  alerts.update();
}

function wantsRing() {
  if (state.unviewed.size) return true;
  if (state.presence !== "available") return false; // an agent who is away is not rung for the line
  for (const item of state.waiting.values()) if (item.manual) return true;
  return false;
}

function renderAll() {
  renderTabs();
  renderConversation();
  renderWaiting();
  renderVisitorPanel();
  if (state.view === "missed") renderMissed();
  if (state.view === "team") renderTeamView();
  updateCounts();
}

// --- notices ----------------------------------------------------------------------------------

let noticeTimer = null;

function say(text, kind = "info") {
  ui.notice.textContent = text;
  ui.notice.dataset.kind = kind;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { ui.notice.textContent = ""; }, 20_000);
}

// --- dialogs: transfer, close, help -----------------------------------------------------------

function openDialog(dialog) {
  if (dialog.open) return;
  dialog.opener = document.activeElement;
  dialog.showModal();
}

function closeDialogNow(dialog) {
  if (dialog.open) dialog.close();
}

for (const dialog of document.querySelectorAll("dialog")) {
  dialog.addEventListener("close", () => {
    const opener = dialog.opener;
    dialog.opener = null;
    if (opener && opener.isConnected && !opener.disabled && opener.getClientRects().length) opener.focus();
    else if (state.active) ui.reply.focus();
    else $("main").focus();
  });
}

function dialogDone(dialog, error) {
  const form = dialog.querySelector("form");
  const errorNode = dialog.querySelector(".error");
  for (const button of form.querySelectorAll("button")) button.disabled = false;
  if (error) {
    errorNode.textContent = error;
    errorNode.hidden = false;
    return;
  }
  closeDialogNow(dialog);
}

function busy(dialog) {
  const errorNode = dialog.querySelector(".error");
  errorNode.hidden = true;
  errorNode.textContent = "";
  dialog.querySelector("button[type=submit]").disabled = true;
}

const transferDialog = $("transfer-dialog");
const transferForm = $("transfer-form");
const transferTarget = $("transfer-target");
const TRANSFER_KINDS = {
  agent: { label: "Agent id", help: "An agent who is available and has a free slot." },
  queue: { label: "Queue name", help: "A queue that is open and has an agent present." },
  bot: { label: "Bot state", help: "Where the bot goes on in the conversation's flow." },
};

function transferKind() {
  return transferForm.querySelector("input[name=transfer-kind]:checked")?.value || "agent";
}

function transferOptions() {
  const kind = transferKind();
  const conv = state.conversations.get(state.active);
  let options = [];
  if (kind === "agent") {
    // who may take it now (online, available, with room), as the server says
    options = (state.colleagues || []).map((agent) => [agent.id, agent.name]);
  } else if (kind === "queue") {
    const names = new Set([...(state.agent.queues || []), ...(state.team?.queues || []).map((q) => q.name),
      ...[...state.waiting.values()].map((item) => item.queue)]);
    options = [...names].filter(Boolean).sort().map((name) => [name, name]);
  } else if (conv?.flow) {
    options = (state.flowStates.get(conv.flow) || []).map((name) => [name, name]);
    if (!state.flowStates.has(conv.flow)) loadStates(conv.flow);
  }
  fill($("transfer-options"), options.map(([value, label]) => el("option", { attrs: { value, label } })));
  $("transfer-target-label").textContent = TRANSFER_KINDS[kind].label;
  $("transfer-target-help").textContent = TRANSFER_KINDS[kind].help;
}

function loadStates(flow) {
  state.flowStates.set(flow, []);
  const url = config.statesUrl.replace("FLOW", encodeURIComponent(flow));
  fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then((response) => (response.ok ? response.json() : { states: [] }))
    .then((data) => {
      state.flowStates.set(flow, Array.isArray(data.states) ? data.states.map(String) : []);
      if (transferDialog.open) transferOptions();
    })
    .catch(() => state.flowStates.delete(flow));
}

function openTransfer() {
  const conv = state.conversations.get(state.active);
  if (!conv || conv.status === "closed" || !state.online) return;
  transferForm.reset();
  dialogDone(transferDialog, null);
  $("transfer-error").hidden = true;
  state.colleagues = null;
  send({ type: "colleagues" }); // fresh each time: presence and room change by the minute
  transferOptions();
  openDialog(transferDialog);
  transferForm.querySelector("input[name=transfer-kind]:checked").focus();
}

transferForm.addEventListener("change", (event) => {
  if (event.target.name === "transfer-kind") {
    transferTarget.value = "";
    transferOptions();
  }
});

transferForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const conv = state.conversations.get(state.active);
  const target = transferTarget.value.trim();
  const errorNode = $("transfer-error");
  if (!conv) return closeDialogNow(transferDialog);
  if (!target) {
    errorNode.textContent = `Give the ${TRANSFER_KINDS[transferKind()].label.toLowerCase()}.`;
    errorNode.hidden = false;
    transferTarget.focus();
    return undefined;
  }
  const kind = transferKind();
  const note = $("transfer-note").value.trim();
  const frame = { type: "transfer", conversation: conv.id, to: { [kind]: target } };
  if (note) frame.note = note;
  busy(transferDialog);
  if (!send(frame)) {
    dialogDone(transferDialog, "You are offline; try again once the connection is back.");
    return undefined;
  }
  startPending({ kind: "transfer", cid: conv.id, to: kind === "bot" ? "the bot" : target });
  return undefined;
});

$("transfer-cancel").addEventListener("click", () => { settlePendingFor("transfer"); closeDialogNow(transferDialog); });

function settlePendingFor(kind) {
  if (state.pending?.kind === kind) {
    clearTimeout(state.pending.timer);
    state.pending = null;
  }
}

const closeDialog = $("close-dialog");
const closeForm = $("close-form");

function openClose() {
  const conv = state.conversations.get(state.active);
  if (!conv || conv.status === "closed" || !state.online) return;
  closeForm.reset();
  dialogDone(closeDialog, null);
  $("close-error").hidden = true;
  fill($("tag-options"), recentTags().map((tag) => el("option", { attrs: { value: tag } })));
  openDialog(closeDialog);
  $("close-tags").focus();
}

function recentTags() {
  try {
    const tags = JSON.parse(localStorage.getItem(RECENT_TAGS) || "[]");
    return Array.isArray(tags) ? tags.filter((tag) => typeof tag === "string").slice(0, 30) : [];
  } catch {
    return [];
  }
}

function rememberTags(tags) {
  const merged = [...new Set([...tags, ...recentTags()])].slice(0, 30);
  try {
    localStorage.setItem(RECENT_TAGS, JSON.stringify(merged));
  } catch {
    // private mode: no suggestions next time
  }
}

closeForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const conv = state.conversations.get(state.active);
  if (!conv) return closeDialogNow(closeDialog);
  const tags = [...new Set($("close-tags").value.split(",").map((tag) => tag.trim()).filter(Boolean))];
  const errorNode = $("close-error");
  const long = tags.find((tag) => tag.length > MAX_TAG_CHARS);
  if (tags.length > MAX_TAGS || long) {
    errorNode.textContent = long ? `The tag “${long.slice(0, 60)}” is longer than ${MAX_TAG_CHARS} characters.` :
      `At most ${MAX_TAGS} tags.`;
    errorNode.hidden = false;
    $("close-tags").focus();
    return undefined;
  }
  const frame = { type: "close", conversation: conv.id };
  if (tags.length) frame.tags = tags;
  busy(closeDialog);
  if (!send(frame)) {
    dialogDone(closeDialog, "You are offline; try again once the connection is back.");
    return undefined;
  }
  rememberTags(tags);
  startPending({ kind: "close", cid: conv.id });
  return undefined;
});

$("close-cancel").addEventListener("click", () => { settlePendingFor("close"); closeDialogNow(closeDialog); });

const helpDialog = $("help-dialog");
const singleKeys = $("single-keys");
singleKeys.checked = state.singleKeys;
singleKeys.addEventListener("change", () => {
  state.singleKeys = singleKeys.checked;
  try {
    localStorage.setItem(SINGLE_KEYS, state.singleKeys ? "on" : "off");
  } catch {
    // kept for this page only
  }
});
$("open-help").addEventListener("click", () => openDialog(helpDialog));
$("help-close").addEventListener("click", () => closeDialogNow(helpDialog));
$("open-transfer").addEventListener("click", openTransfer);
$("open-close").addEventListener("click", openClose);
$("reconnect-now").addEventListener("click", () => connection.reconnectNow());

// --- keyboard shortcuts -----------------------------------------------------------------------

const SHORTCUTS = {
  KeyJ: () => step(1),
  KeyK: () => step(-1),
  KeyR: () => { showView("conversations"); if (state.active) ui.reply.focus(); },
  KeyC: () => { showView("conversations"); openClose(); },
  KeyT: () => { showView("conversations"); openTransfer(); },
  KeyW: () => focusWaiting(),
  KeyA: () => acceptOldest(),
  KeyM: () => { showView("missed"); $("missed-heading").setAttribute("tabindex", "-1"); $("missed-heading").focus(); },
};

document.addEventListener("keydown", (event) => {
  if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.isComposing) return;
  if (document.querySelector("dialog[open]")) return; // a dialog has the keyboard
  if (event.altKey && !event.shiftKey && (event.key === "ArrowDown" || event.key === "ArrowUp")) {
    event.preventDefault();
    step(event.key === "ArrowDown" ? 1 : -1);
    return;
  }
  const typing = isTypingTarget(event.target);
  if (event.altKey && event.shiftKey && SHORTCUTS[event.code]) { // works everywhere
    event.preventDefault();
    SHORTCUTS[event.code]();
    return;
  }
  if (typing || event.altKey) return;
  if (event.key === "?") {
    event.preventDefault();
    openDialog(helpDialog);
    return;
  }
  if (!state.singleKeys || event.shiftKey || !SHORTCUTS[event.code]) return;
  event.preventDefault();
  SHORTCUTS[event.code]();
});

// --- canned replies ---------------------------------------------------------------------------

const canned = new CannedStore(config.cannedUrl);
const picker = new CannedPicker({
  textarea: ui.reply,
  list: $("canned-list"),
  status: $("canned-status"),
  store: canned,
  context: () => {
    const conv = state.conversations.get(state.active);
    return { visitor: conv?.visitor || {}, vars: conv?.vars || {}, agent: { name: state.agent.name, id: state.agent.id } };
  },
  onSessionEnded: sessionEnded,
});

// --- alerts -----------------------------------------------------------------------------------

const alerts = new Alerts({
  soundButton: $("enable-sound"),
  notifyButton: $("enable-notifications"),
  onNotificationClick: () => {},
});
alerts.wantsRing = wantsRing;

// --- start --------------------------------------------------------------------------------------

window.__conciergeConsole = { // a handle for the browser tests and for debugging
  get socket() { return connection.ws; },
  connection,
  state,
  alerts,
};

showConnection("connecting");
renderAll();
connection.start();
canned.refresh(true).then(() => {
  if (canned.error) say(`Canned replies unavailable: ${canned.error}`, "error");
}, (error) => { if (error instanceof SessionEnded) sessionEnded(); });

// Logging out with conversations held: they go back to their queues after the grace period.
document.querySelector("form.logout")?.addEventListener("submit", (event) => {
  const held = [...state.conversations.values()].filter((conv) => conv.status !== "closed").length;
  if (held && !window.confirm(`You hold ${held} open conversation${held === 1 ? "" : "s"}. ` +
      "They go back to the queue unless you log in again soon. Log out anyway?")) {
    event.preventDefault();
  }
});
