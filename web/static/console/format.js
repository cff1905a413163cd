// Words and numbers for people: durations, times, and what the protocol's reasons mean.

export function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s} s`;
  const minutes = Math.floor(s / 60);
  if (minutes < 60) return `${minutes} min ${String(s % 60).padStart(2, "0")} s`;
  const hours = Math.floor(minutes / 60);
  return `${hours} h ${String(minutes % 60).padStart(2, "0")} min`;
}

function asDate(ts) {
  const when = ts instanceof Date ? ts : new Date(ts);
  return Number.isNaN(when.getTime()) ? null : when;
}

/** 14:07 today, else 24 Nov 14:07. */
export function clock(ts) {
  const when = asDate(ts);
  if (!when) return "";
  const time = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const today = new Date();
  if (when.toDateString() === today.toDateString()) return time;
  const day = when.toLocaleDateString([], { day: "numeric", month: "short" });
  return `${day} ${time}`;
}

export function isoOrEmpty(ts) {
  const when = asDate(ts);
  return when ? when.toISOString() : "";
}

export const UNASSIGNED = {
  closed: "it was closed",
  transferred: "it was transferred",
  agent_lost: "you were offline too long, so it went back to its queue",
};

export const MISSED_WHY = {
  no_agents: "nobody was available",
  closed_hours: "outside opening hours",
  left_queue: "the visitor stopped waiting",
  ended_waiting: "the visitor left while waiting",
  max_wait: "waited too long",
};

export const ESCALATION_REASON = {
  asked: "the visitor asked for a person",
  fallback: "the bot did not understand the visitor",
  invalid: "the visitor's answers did not pass the bot's checks",
  flow: "the flow handed it over",
  transfer: "transferred by a colleague",
};

export const CLOSED_REASON = {
  visitor: "the visitor ended it",
  bot: "the bot ended it",
  agent: "an agent closed it",
  flow_removed: "its flow was removed",
};

export const STATUS = {
  bot: "with the bot",
  queued: "waiting for a person",
  agent: "with a person",
  closed: "closed",
};

export function describe(table, key) {
  if (key === null || key === undefined || key === "") return "";
  return table[key] ? `${table[key]}` : String(key);
}

/** The value of a variable the bot collected, as one line of text. */
export function valueText(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "object") {
    const text = JSON.stringify(value);
    return text.length > 500 ? `${text.slice(0, 499)}…` : text;
  }
  return String(value);
}

/**
 * The variables the bot collected as [name, text] rows, nested ones spelled as a canned reply
 * names them (order.json.eta), at most `limit` rows.
 */
export function flatVars(vars, limit = 40) {
  const rows = [];
  const walk = (value, path, depth) => {
    if (rows.length >= limit) return;
    if (value && typeof value === "object" && !Array.isArray(value) && depth < 4 &&
        Object.keys(value).length) {
      for (const [key, inner] of Object.entries(value)) walk(inner, `${path}.${key}`, depth + 1);
      return;
    }
    rows.push([path, value === null || value === undefined ? "—" : valueText(value)]);
  };
  for (const [name, value] of Object.entries(vars || {})) walk(value, name, 0);
  return rows;
}

/** Who the visitor is, in a few words; an anonymous one by the end of its conversation's id,
 *  so two of them are told apart. */
export function visitorName(visitor, conversationId = "") {
  const v = visitor || {};
  const known = (v.name && String(v.name).trim()) || (v.email && String(v.email).trim());
  if (known) return known;
  const tail = String(conversationId || "").replace(/[^A-Za-z0-9]/g, "").slice(-4);
  return tail ? `Visitor ${tail}` : "Visitor";
}
