"""The queues' rules, from QUEUES_FILE: strategy, max_wait and opening hours with a time zone.

```yaml
support:
  strategy: longest_idle        # longest_idle (default) | least_busy | manual
  max_wait: 600                 # seconds in the queue before the flow's no_agents state
  hours:                        # optional; outside them an escalation goes on at no_agents
    timezone: Europe/Berlin
    mon-fri: "09:00-17:30"
    sat: "10:00-14:00"
```

A queue that a flow escalates to but the file does not name gets the defaults;
a missing file means every queue has them. A file with mistakes is refused
with every mistake listed (the server does not start), never half-read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

LONGEST_IDLE, LEAST_BUSY, MANUAL = "longest_idle", "least_busy", "manual"
STRATEGIES = (LONGEST_IDLE, LEAST_BUSY, MANUAL)
DEFAULT_MAX_WAIT_S = 600
MAX_MAX_WAIT_S = 7 * 24 * 3600  # a week: longer is a mistake, not a wait
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SPAN = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-4]):([0-5][0-9])")
KEYS = ("strategy", "max_wait", "hours")


class QueueFileError(Exception):
    """QUEUES_FILE cannot be used; lists every problem."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"{path}: {len(problems)} problem(s):\n{lines}")


@dataclass(frozen=True)
class Hours:
    """Opening hours: per weekday (0 = Monday) the spans open, in a time zone."""

    zone: ZoneInfo
    days: dict[int, tuple[tuple[time, time | None], ...]]  # None: until midnight (24:00)

    def open_at(self, when: datetime) -> bool:
        local = when.astimezone(self.zone)
        now = local.time()
        return any(start <= now and (end is None or now < end)
                   for start, end in self.days.get(local.weekday(), ()))


@dataclass(frozen=True)
class QueueSettings:
    name: str
    strategy: str = LONGEST_IDLE
    max_wait_s: int = DEFAULT_MAX_WAIT_S
    hours: Hours | None = None  # None: always open

    def open_at(self, when: datetime) -> bool:
        return self.hours is None or self.hours.open_at(when)


@dataclass(frozen=True)
class QueueBook:
    """Every queue's settings; a queue not named gets the defaults."""

    named: dict[str, QueueSettings] = field(default_factory=dict)

    def get(self, name: str) -> QueueSettings:
        return self.named.get(name) or QueueSettings(name)


def load(path: Path) -> QueueBook:
    """Read QUEUES_FILE; a missing file gives the defaults; raise QueueFileError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return QueueBook()
    except (OSError, UnicodeDecodeError) as exc:
        raise QueueFileError(path, [f"cannot be read: {exc}"]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise QueueFileError(path, [f"is not valid YAML: {exc}"]) from exc
    return parse(path, data)


def parse(path: Path, data: Any) -> QueueBook:
    """Check and read the file's parsed YAML; raise QueueFileError listing every problem."""
    if data is None:
        return QueueBook()
    if not isinstance(data, dict):
        raise QueueFileError(path, ["must map queue names to their settings"])
    problems: list[str] = []
    named = {}
    for name, settings in data.items():
        queue = _queue(str(name), settings, problems)
        if queue is not None:
            named[str(name)] = queue
    if problems:
        raise QueueFileError(path, problems)
    return QueueBook(named)


def _queue(name: str, settings: Any, problems: list[str]) -> QueueSettings | None:
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", name):
        problems.append(f"queue {name!r}: a name is lower-case letters, digits, '-' and '_'")
        return None
    settings = {} if settings is None else settings
    if not isinstance(settings, dict):
        problems.append(f"queue {name!r}: its settings must be a mapping ({', '.join(KEYS)})")
        return None
    for key in settings:
        if key not in KEYS:
            problems.append(f"queue {name!r}: unknown setting {key!r} (known: {', '.join(KEYS)})")
    strategy = settings.get("strategy", LONGEST_IDLE)
    if strategy not in STRATEGIES:
        problems.append(f"queue {name!r}: strategy {strategy!r} must be one of "
                        f"{', '.join(STRATEGIES)}")
        strategy = LONGEST_IDLE
    max_wait = settings.get("max_wait", DEFAULT_MAX_WAIT_S)
    if isinstance(max_wait, bool) or not isinstance(max_wait, int) or \
            not 1 <= max_wait <= MAX_MAX_WAIT_S:
        problems.append(f"queue {name!r}: max_wait {max_wait!r} must be whole seconds between 1 "
                        f"and {MAX_MAX_WAIT_S}")
        max_wait = DEFAULT_MAX_WAIT_S
    hours = _hours(name, settings["hours"], problems) if "hours" in settings else None
    return QueueSettings(name, strategy, max_wait, hours)


def _hours(queue: str, hours: Any, problems: list[str]) -> Hours | None:
    where = f"queue {queue!r}: hours"
    if not isinstance(hours, dict) or "timezone" not in hours:
        problems.append(f"{where} must be a mapping with a timezone (such as Europe/Berlin) and "
                        "days like mon-fri: \"09:00-17:30\"")
        return None
    try:
        zone = ZoneInfo(str(hours["timezone"]))
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"{where}: unknown timezone {hours['timezone']!r} (an IANA name such "
                        "as Europe/Berlin or America/New_York)")
        return None
    days: dict[int, list[tuple[time, time | None]]] = {}
    for key, spans in hours.items():
        if key == "timezone":
            continue
        chosen = _days(str(key))
        if chosen is None:
            problems.append(f"{where}: {key!r} is not a day or a range of days (mon … sun, "
                            "such as mon-fri or sat)")
            continue
        for span in str(spans).split(","):
            found = SPAN.fullmatch(span.strip())
            start = end = None
            if found:
                start = time(int(found[1]), int(found[2]))
                end = None if found[3] == "24" else time(int(found[3]), int(found[4]))
            if not found or (found[3] == "24" and found[4] != "00") or \
                    (end is not None and end <= start):
                problems.append(f"{where}: {key}: {span.strip()!r} is not a span like "
                                "\"09:00-17:30\" (24-hour clock, start before end)")
                continue
            for day in chosen:
                days.setdefault(day, []).append((start, end))
    return Hours(zone, {day: tuple(spans) for day, spans in days.items()})


def _days(key: str) -> list[int] | None:
    first, _, last = key.lower().partition("-")
    if first not in DAYS or (last and last not in DAYS):
        return None
    start, stop = DAYS.index(first), DAYS.index(last or first)
    return [day % 7 for day in range(start, stop + 1 if stop >= start else stop + 8)]
