// Canned replies: fetched from /console/canned, picked by typing "/" and letters in the
// composer (arrows, Enter or Tab, Escape), filled in from the open conversation as plain text.

import { el, fill } from "./dom.js";

const SHOWN = 8;
const STALE_MS = 60_000; // the file may be edited during a shift: fetched again after this
const TOKEN = /(^|\s)\/([A-Za-z0-9_-]*)$/; // "/ord" right before the caret
const PLACEHOLDER = /(,? ?)\{\{\s*([A-Za-z_][\w.]*)\s*\}\}/g;

export class SessionEnded extends Error {}

export class CannedStore {
  constructor(url) {
    this.url = url;
    this.replies = [];
    this.error = null;
    this.fetchedAt = 0;
    this.pending = null;
  }

  refresh(force = false) {
    if (this.pending) return this.pending;
    if (!force && Date.now() - this.fetchedAt < STALE_MS) return Promise.resolve(this);
    this.pending = fetch(this.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((response) => {
        const type = response.headers.get("Content-Type") || "";
        if (response.redirected || !type.includes("application/json")) {
          throw new SessionEnded("the session ended");
        }
        if (!response.ok) throw new Error(`the server answered ${response.status}`);
        return response.json();
      })
      .then((data) => {
        this.replies = Array.isArray(data.replies) ? data.replies.filter(
          (reply) => reply && typeof reply.shortcut === "string" && typeof reply.text === "string") : [];
        this.error = typeof data.error === "string" ? data.error : null;
        this.fetchedAt = Date.now();
        return this;
      })
      .catch((error) => {
        if (error instanceof SessionEnded) throw error;
        this.error = `canned replies could not be loaded (${error.message || error})`;
        return this;
      })
      .finally(() => { this.pending = null; });
    return this.pending;
  }

  match(query) {
    const q = query.toLowerCase();
    const starts = [];
    const contains = [];
    for (const reply of this.replies) {
      const shortcut = reply.shortcut.toLowerCase();
      const title = String(reply.title || "").toLowerCase();
      if (shortcut.startsWith(q)) starts.push(reply);
      else if (q && (shortcut.includes(q) || title.includes(q))) contains.push(reply);
    }
    return starts.concat(contains).slice(0, SHOWN);
  }
}

function lookup(context, path) {
  let value = context;
  for (const part of path.split(".")) {
    if (value === null || typeof value !== "object" || !Object.hasOwn(value, part)) return "";
    value = value[part];
  }
  if (value === null || value === undefined) return "";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

/**
 * Fill `{{ visitor.name }}`, `{{ visitor.email }}`, `{{ agent.name }}` and `{{ vars.x }}` from
 * `context`; a missing value is "", and the comma or space before it goes too, so that
 * "Thanks, {{ visitor.name }}!" reads "Thanks!" for a visitor without a name. Plain text in,
 * plain text out: nothing is ever read as HTML.
 */
export function fillTemplate(text, context) {
  return String(text).replace(PLACEHOLDER, (match, before, path, offset, whole) => {
    const value = lookup(context, path);
    if (value !== "") return before + value;
    const next = whole.charAt(offset + match.length);
    if (next === "" || /[.,!?;:)]/.test(next)) return "";
    if (/\s/.test(next)) return before.trimEnd();
    return before;
  });
}

export class CannedPicker {
  /**
   * textarea: the composer; list: its listbox (ul); status: a polite live region;
   * store: a CannedStore; context(): the fill-in values of the open conversation.
   */
  constructor({ textarea, list, status, store, context, onSessionEnded }) {
    this.textarea = textarea;
    this.list = list;
    this.status = status;
    this.store = store;
    this.context = context;
    this.onSessionEnded = onSessionEnded;
    this.options = [];
    this.active = -1;
    this.token = null; // {start, end} of "/query" in the textarea
    textarea.addEventListener("input", () => this.update());
    textarea.addEventListener("click", () => this.update());
    textarea.addEventListener("blur", () => this.close());
    textarea.addEventListener("focus", () => {
      this.store.refresh().catch((error) => this.ended(error));
    });
    list.addEventListener("mousedown", (event) => event.preventDefault()); // keep the focus
  }

  get isOpen() {
    return !this.list.hidden;
  }

  ended(error) {
    if (error instanceof SessionEnded) this.onSessionEnded?.();
  }

  update() {
    const { value, selectionStart, selectionEnd } = this.textarea;
    if (selectionStart !== selectionEnd) return this.close();
    const found = TOKEN.exec(value.slice(0, selectionStart));
    if (!found) return this.close();
    const query = found[2];
    this.token = { start: selectionStart - query.length - 1, end: selectionStart };
    const show = () => this.show(query);
    show();
    this.store.refresh().then(() => {
      if (this.token && this.textarea.value.slice(this.token.start, this.token.end) === `/${query}`) show();
    }, (error) => this.ended(error));
    return undefined;
  }

  show(query) {
    const matches = this.store.match(query);
    const previous = this.options[this.active]?.reply.shortcut;
    this.options = matches.map((reply, index) => ({
      reply,
      node: el("li", {
        class: "canned-option",
        attrs: { role: "option", id: `canned-option-${index}`, "aria-selected": "false" },
        on: { click: () => { this.select(index); this.insert(); } },
      },
      el("span", { class: "canned-shortcut", text: `/${reply.shortcut}` }),
      el("span", { class: "canned-title", text: reply.title || reply.shortcut }),
      el("span", { class: "canned-text", text: fillTemplate(reply.text, this.context()) })),
    }));
    if (!matches.length) {
      const why = this.store.error ? `Canned replies unavailable: ${this.store.error}`
        : this.store.replies.length ? `No canned reply starts with /${query}.`
          : "There are no canned replies (CANNED_FILE).";
      fill(this.list, el("li", { class: "canned-empty", attrs: { role: "option", "aria-disabled": "true", "aria-selected": "false", id: "canned-option-none" }, text: why }));
      this.list.hidden = false;
      this.active = -1;
      this.textarea.removeAttribute("aria-activedescendant");
      this.status.textContent = why;
      return;
    }
    fill(this.list, this.options.map((option) => option.node));
    this.list.hidden = false;
    const keep = this.options.findIndex((option) => option.reply.shortcut === previous);
    this.select(keep >= 0 ? keep : 0);
    this.status.textContent = `${matches.length} canned ${matches.length === 1 ? "reply" : "replies"}: ` +
      "up and down arrows to choose, Enter to insert, Escape to close.";
  }

  select(index) {
    this.options.forEach((option, i) => option.node.setAttribute("aria-selected", String(i === index)));
    this.active = index;
    const node = this.options[index]?.node;
    if (node) {
      this.textarea.setAttribute("aria-activedescendant", node.id);
      node.scrollIntoView({ block: "nearest" });
    }
  }

  close() {
    if (this.list.hidden && !this.token) return;
    this.list.hidden = true;
    this.list.replaceChildren();
    this.options = [];
    this.active = -1;
    this.token = null;
    this.textarea.removeAttribute("aria-activedescendant");
  }

  insert() {
    const option = this.options[this.active];
    if (!option || !this.token) return false;
    const text = fillTemplate(option.reply.text, this.context());
    const { start, end } = this.token;
    this.textarea.setRangeText(text, start, end, "end");
    this.close();
    this.textarea.focus();
    this.textarea.dispatchEvent(new Event("input", { bubbles: true }));
    this.status.textContent = `Inserted /${option.reply.shortcut}.`;
    return true;
  }

  /** Keys while the list is open; true if the key was the picker's. */
  handleKey(event) {
    if (!this.isOpen) return false;
    const count = this.options.length;
    switch (event.key) {
      case "ArrowDown":
        if (count) this.select((this.active + 1) % count);
        return true;
      case "ArrowUp":
        if (count) this.select((this.active - 1 + count) % count);
        return true;
      case "Enter":
      case "Tab":
        if (event.shiftKey && event.key === "Enter") return false;
        if (!count) { this.close(); return event.key === "Enter" ? false : false; }
        return this.insert();
      case "Escape":
        this.close();
        return true;
      default:
        return false;
    }
  }
}
