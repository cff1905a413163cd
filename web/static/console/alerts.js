// Alerts an agent does not miss: a sound (Web Audio) that repeats every few seconds while
// something waits for them, a desktop notification, and the count in the tab's title.
//
// Browsers start an AudioContext suspended until the page gets a user gesture; the console
// shows "Click to enable sound" while it is, and resumes it on the first click or key press.
// Notifications need the agent's permission, asked from a click (never on load).

const RING_EVERY_MS = 4_000;
const BASE_TITLE = "Console — Concierge";

export class Alerts {
  constructor({ soundButton, notifyButton, onNotificationClick }) {
    this.soundButton = soundButton;
    this.notifyButton = notifyButton;
    this.onNotificationClick = onNotificationClick;
    this.context = null;
    this.ringing = false;
    this.ringTimer = null;
    this.beeps = 0; // sounds played: for the browser tests
    this.notifications = 0;
    this.wantsRing = () => false;

    const Context = window.AudioContext || window.webkitAudioContext;
    if (Context) {
      try {
        this.context = new Context(); // suspended until a gesture, unless the browser allows it
        this.context.addEventListener("statechange", () => this.showSoundState());
      } catch {
        this.context = null;
      }
    }
    const resume = () => this.enableSound();
    document.addEventListener("pointerdown", resume, true);
    document.addEventListener("keydown", resume, true);
    soundButton.addEventListener("click", resume);
    notifyButton.addEventListener("click", () => this.askPermission());
    this.showSoundState();
    this.showPermission();
  }

  get soundReady() {
    return this.context !== null && this.context.state === "running";
  }

  enableSound() {
    if (this.context && this.context.state === "suspended") {
      this.context.resume().then(() => this.showSoundState(), () => this.showSoundState());
    }
  }

  showSoundState() {
    this.soundButton.hidden = !this.context || this.soundReady;
  }

  askPermission() {
    if (!("Notification" in window)) return;
    Promise.resolve(Notification.requestPermission()).then(() => this.showPermission(),
      () => this.showPermission());
  }

  showPermission() {
    this.notifyButton.hidden = !("Notification" in window) ||
      Notification.permission !== "default";
  }

  /** Two short tones; nothing while sound is not enabled. */
  beep() {
    if (!this.soundReady) return;
    const ctx = this.context;
    const start = ctx.currentTime + 0.01;
    [[880, 0], [1175, 0.16]].forEach(([frequency, offset]) => {
      const tone = ctx.createOscillator();
      const gain = ctx.createGain();
      tone.type = "sine";
      tone.frequency.value = frequency;
      gain.gain.setValueAtTime(0.0001, start + offset);
      gain.gain.exponentialRampToValueAtTime(0.25, start + offset + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + offset + 0.14);
      tone.connect(gain).connect(ctx.destination);
      tone.start(start + offset);
      tone.stop(start + offset + 0.15);
    });
    this.beeps += 1;
  }

  /** Show a desktop notification when the agent is not looking at the console. */
  notify(title, body, tag, onClick) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    if (document.visibilityState === "visible" && document.hasFocus()) return;
    try {
      const note = new Notification(title, { body, tag, renotify: true });
      note.addEventListener("click", () => {
        window.focus();
        note.close();
        (onClick || this.onNotificationClick)?.();
      });
      this.notifications += 1;
    } catch {
      // some browsers allow notifications only from a service worker
    }
  }

  /** Ring now and every few seconds for as long as `wantsRing()` says so. */
  update() {
    const want = this.wantsRing();
    if (want && !this.ringing) {
      this.ringing = true;
      this.beep();
      this.ringTimer = setInterval(() => {
        if (this.wantsRing()) this.beep(); else this.update();
      }, RING_EVERY_MS);
    } else if (!want && this.ringing) {
      this.ringing = false;
      clearInterval(this.ringTimer);
      this.ringTimer = null;
    }
    document.body.dataset.ringing = this.ringing ? "true" : "false";
  }

  setTitleCount(count) {
    document.title = count > 0 ? `(${count}) ${BASE_TITLE}` : BASE_TITLE;
  }
}
