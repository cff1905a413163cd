// Building DOM without HTML: every text goes in as a text node (textContent), never as markup.
// The page's CSP forbids inline styles and handlers, so `el` refuses `style` and `on…` attributes.

/**
 * Make an element. `props`: class (string), text (string), attrs ({name: value}; null/false
 * leaves it out, true sets it empty), data ({key: value}), hidden (bool), on ({event: handler}).
 * Children: nodes, strings (text nodes), arrays of them; null/undefined/false are skipped.
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  if (props.class) node.className = props.class;
  if (props.text !== undefined && props.text !== null) node.textContent = String(props.text);
  for (const [name, value] of Object.entries(props.attrs || {})) {
    setAttr(node, name, value);
  }
  for (const [key, value] of Object.entries(props.data || {})) {
    if (value !== undefined && value !== null) node.dataset[key] = String(value);
  }
  if (props.hidden) node.hidden = true;
  for (const [event, handler] of Object.entries(props.on || {})) {
    node.addEventListener(event, handler);
  }
  append(node, children);
  return node;
}

export function setAttr(node, name, value) {
  const lower = String(name).toLowerCase();
  if (lower === "style" || lower.startsWith("on")) {
    throw new Error(`refusing the attribute ${name}: the CSP forbids inline styles and handlers`);
  }
  if (value === null || value === undefined || value === false) {
    node.removeAttribute(name);
  } else {
    node.setAttribute(name, value === true ? "" : String(value));
  }
}

export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replace every child of `node` with `children`. */
export function fill(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

/** Text for people, hidden from sight but read by screen readers. */
export function hiddenText(text) {
  return el("span", { class: "visually-hidden", text });
}

/** A link only for http(s) URLs (or `protocols`); anything else (javascript:, data:, garbage)
 * is plain text. */
export function safeLink(url, label, protocols = ["http:", "https:"]) {
  let parsed = null;
  try {
    parsed = new URL(String(url));
  } catch {
    parsed = null;
  }
  if (!parsed || !protocols.includes(parsed.protocol)) {
    return document.createTextNode(String(label ?? url));
  }
  const web = parsed.protocol === "http:" || parsed.protocol === "https:";
  return el("a", {
    text: label ?? url,
    attrs: { href: parsed.href, target: web ? "_blank" : null, rel: "noopener noreferrer" },
  });
}

/** Is the event's target somewhere the agent types (so single-key shortcuts stay off)? */
export function isTypingTarget(target) {
  if (!(target instanceof Element)) return false;
  if (target.isContentEditable) return true;
  const tag = target.tagName;
  if (tag === "TEXTAREA" || tag === "SELECT") return true;
  if (tag !== "INPUT") return false;
  const type = (target.getAttribute("type") || "text").toLowerCase();
  return !["button", "submit", "reset", "checkbox", "radio", "range", "color", "file",
    "image"].includes(type);
}
