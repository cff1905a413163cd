// What the console shows of a conversation and of the team, built with textContent only.

import { el, fill, hiddenText, safeLink } from "./dom.js";
import * as fmt from "./format.js";

export function timeNode(ts) {
  const iso = fmt.isoOrEmpty(ts);
  if (!iso) return null;
  return el("time", { class: "when", text: fmt.clock(ts), attrs: { datetime: iso } });
}

/** One message of a transcript: the bot's marked as the bot's, system messages apart. */
export function messageNode(frame, { visitor, agentName }) {
  const from = frame.from;
  const data = { seq: frame.seq, id: frame.id, from };
  if (from === "system") {
    return el("li", { class: "msg msg-system", data: { ...data, event: frame.event } },
      el("p", { class: "text" }, hiddenText("System: "), frame.text || ""),
      timeNode(frame.ts));
  }
  let who = "Agent";
  let badge = null;
  if (from === "bot") {
    who = "Bot";
    badge = el("span", { class: "badge badge-bot", text: "automatic" });
  } else if (from === "visitor") {
    who = fmt.visitorName(visitor);
  } else if (from === "agent") {
    who = frame.name || "Agent";
  }
  const mine = from === "agent" && frame.name && frame.name === agentName;
  const text = frame.text || (frame.payload ? `(chose ${frame.payload})` : "");
  const buttons = Array.isArray(frame.buttons) && frame.buttons.length ?
    el("p", { class: "offered" }, "Offered: ",
      frame.buttons.map((button) => el("span", { class: "chip", text: button?.title ?? "" }))) : null;
  return el("li", { class: `msg msg-${from}${mine ? " msg-mine" : ""}`, data },
    el("p", { class: "meta" }, el("span", { class: "who", text: who }), badge, " ", timeNode(frame.ts)),
    el("p", { class: "text", text }),
    buttons,
    from === "agent" ? el("p", { class: "delivery" }) : null);
}

function facts(rows) {
  const shown = rows.filter(([, value]) => value !== null && value !== undefined && value !== "");
  if (!shown.length) return null;
  return el("dl", { class: "facts" }, shown.map(([term, value]) => el("div", { class: "fact" },
    el("dt", { text: term }), el("dd", {}, value))));
}

function identity(visitor) {
  if (visitor.verified) {
    return el("span", { class: "verified" }, "Verified", visitor.user_id ?
      ` (user id ${visitor.user_id})` : "");
  }
  return el("span", { class: "unverified", text: "Not verified: as the visitor gave it" });
}

function page(visitor) {
  if (!visitor.page_url && !visitor.page_title) return null;
  return el("span", { class: "page" },
    visitor.page_url ? safeLink(visitor.page_url, visitor.page_title || visitor.page_url)
      : visitor.page_title,
    visitor.page_url && visitor.page_title ? el("span", { class: "url", text: visitor.page_url }) : null);
}

/** The visitor panel: who, where from, what the bot collected, why it came, their past. */
export function renderVisitor(container, heading, conv) {
  if (!conv) {
    heading.textContent = "Visitor";
    fill(container, el("p", { class: "empty", text: "Open a conversation to see who you are talking to." }));
    return;
  }
  const visitor = conv.visitor || {};
  heading.textContent = fmt.visitorName(visitor);
  const vars = fmt.flatVars(conv.vars);
  const escalation = conv.escalation || null;
  const path = Array.isArray(escalation?.path) ? escalation.path : [];
  const past = Array.isArray(conv.past) ? conv.past : [];
  fill(container,
    facts([
      ["Name", visitor.name],
      ["Email", visitor.email ? safeLink(`mailto:${visitor.email}`, visitor.email, ["mailto:"]) : null],
      ["Identity", identity(visitor)],
      ["Page", page(visitor)],
      ["Referrer", visitor.referrer ? safeLink(visitor.referrer) : null],
      ["Locale", visitor.locale],
    ]),
    el("h3", { text: "What the bot collected" }),
    vars.length ? el("dl", { class: "facts vars" }, vars.map(([name, value]) => el("div", { class: "fact" },
      el("dt", { text: name }), el("dd", { text: fmt.valueText(value) }))))
      : el("p", { class: "empty", text: "Nothing." }),
    escalation ? [
      el("h3", { text: "Why it came to a person" }),
      facts([
        ["Queue", escalation.queue],
        ["Reason", fmt.describe(fmt.ESCALATION_REASON, escalation.reason)],
        ["From", escalation.from],
        ["Note", escalation.note ? el("span", { class: "note", text: escalation.note }) : null],
        ["Bot's path", path.length ? el("ol", { class: "path" }, path.map((state) => el("li", { text: state }))) : null],
      ]),
    ] : null,
    conv.past !== undefined ? [
      el("h3", { text: "Past conversations" }),
      past.length ? el("ol", { class: "past" }, past.map((item) => el("li", {},
        el("span", { class: "past-when", text: fmt.clock(item.created) || "earlier" }), " · ",
        fmt.describe(fmt.STATUS, item.status),
        item.closed_reason ? ` (${fmt.describe(fmt.CLOSED_REASON, item.closed_reason)})` : "",
        item.agent ? ` · with ${item.agent}` : "")))
        : el("p", { class: "empty", text: visitor.verified ? "None." : "Shown for verified visitors only." }),
    ] : null);
}

const PRESENCE = { available: "Available", away: "Away", offline: "Offline" };

export function renderTeam(agentsBody, queuesBody, team) {
  const agents = Array.isArray(team?.agents) ? team.agents : [];
  const queues = Array.isArray(team?.queues) ? team.queues : [];
  fill(agentsBody, agents.length ? agents.map((agent) => el("tr", {},
    el("th", { attrs: { scope: "row" } }, agent.name || agent.id,
      el("span", { class: "me-id", text: ` (${agent.id})` })),
    el("td", {}, el("span", { class: `presence-dot presence-${agent.presence}`, attrs: { "aria-hidden": "true" } }),
      PRESENCE[agent.presence] || String(agent.presence || "")),
    el("td", { text: `${agent.open ?? 0} of ${agent.max_chats ?? "?"}` })))
    : el("tr", {}, el("td", { attrs: { colspan: "3" }, text: "No agents." })));
  fill(queuesBody, queues.length ? queues.map((queue) => el("tr", {},
    el("th", { attrs: { scope: "row" }, text: queue.name }),
    el("td", { text: String(queue.waiting ?? 0) }),
    el("td", { text: queue.waiting ? fmt.duration(queue.longest_wait_s || 0) : "—" }),
    el("td", { text: queue.open === false ? "Closed now" : "Open" })))
    : el("tr", {}, el("td", { attrs: { colspan: "4" }, text: "No queues." })));
}

/** One missed conversation: when, why, who, what the bot collected; read it, mark it. */
export function missedNode(item, { onRead, onFollowUp, offline }) {
  const visitor = item.visitor || {};
  const vars = fmt.flatVars(item.vars);
  const name = fmt.visitorName(visitor);
  const followed = item.followed_up;
  const headingId = `missed-${item.conversation}`;
  return el("li", { class: `missed-item${followed ? " followed" : ""}`, data: { cid: item.conversation } },
    el("h3", { class: "missed-name", attrs: { id: headingId } }, name),
    el("p", { class: "missed-why" },
      timeNode(item.at), " · ", fmt.describe(fmt.MISSED_WHY, item.why),
      item.queue ? ` · queue ${item.queue}` : ""),
    facts([
      ["Email", visitor.email ? safeLink(`mailto:${visitor.email}`, visitor.email, ["mailto:"]) : null],
      ["Identity", identity(visitor)],
      ["Said", item.preview ? el("q", { text: item.preview }) : null],
      ["Now", fmt.describe(fmt.STATUS, item.status)],
    ]),
    vars.length ? el("dl", { class: "facts vars" }, vars.map(([key, value]) => el("div", { class: "fact" },
      el("dt", { text: key }), el("dd", { text: fmt.valueText(value) })))) : null,
    el("p", { class: "missed-actions" },
      el("button", { text: "Read", attrs: { type: "button", "aria-describedby": headingId, disabled: offline }, data: { action: "read" }, on: { click: () => onRead(item) } }),
      followed ? el("span", { class: "followed-by", text: `Followed up by ${followed.name || followed.id}${followed.at ? `, ${fmt.clock(followed.at)}` : ""}` })
        : el("button", { text: "Mark followed up", attrs: { type: "button", "aria-describedby": headingId, disabled: offline }, data: { action: "follow" }, on: { click: () => onFollowUp(item) } })));
}
