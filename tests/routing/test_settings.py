"""QUEUES_FILE: each queue's strategy, max_wait and opening hours, and every mistake named."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from routing.settings import (
    DEFAULT_MAX_WAIT_S,
    LONGEST_IDLE,
    MANUAL,
    QueueFileError,
    load,
    parse,
)

# Not on_cluster: QUEUES_FILE alone, no Redis.

FILE = Path("queues.yaml")


def test_a_missing_file_gives_every_queue_the_defaults(tmp_path):
    book = load(tmp_path / "nowhere.yaml")
    support = book.get("support")
    assert (support.strategy, support.max_wait_s, support.hours) == (LONGEST_IDLE,
                                                                     DEFAULT_MAX_WAIT_S, None)


def test_the_shipped_file_is_valid():
    book = load(Path(__file__).resolve().parents[2] / "queues.yaml")
    assert book.get("support").strategy == LONGEST_IDLE


def test_a_queue_not_named_gets_the_defaults_beside_named_ones():
    book = parse(FILE, {"billing": {"strategy": "manual", "max_wait": 120}})
    assert book.get("billing").strategy == MANUAL and book.get("billing").max_wait_s == 120
    assert book.get("support").strategy == LONGEST_IDLE


def test_every_mistake_is_listed_with_what_to_write_instead():
    with pytest.raises(QueueFileError) as raised:
        parse(FILE, {"support": {"strategy": "fastest", "max_wait": 0, "colour": "red"},
                     "Billing Desk": {},
                     "sales": {"hours": {"timezone": "Mars/Base"}},
                     "help": {"hours": {"timezone": "UTC", "mon-fry": "09:00-17:00",
                                        "tue": "17:00-09:00", "wed": "9-5"}}})
    problems = "\n".join(raised.value.problems)
    for expected in ("strategy 'fastest' must be one of longest_idle, least_busy, manual",
                     "max_wait 0 must be whole seconds", "unknown setting 'colour'",
                     "'Billing Desk': a name is lower-case", "unknown timezone 'Mars/Base'",
                     "'mon-fry' is not a day", "'17:00-09:00' is not a span",
                     "'9-5' is not a span"):
        assert expected in problems
    assert len(raised.value.problems) == 8


def test_bad_yaml_and_a_list_are_refused_clearly(tmp_path):
    broken = tmp_path / "queues.yaml"
    broken.write_text("support: [unclosed\n")
    with pytest.raises(QueueFileError, match="is not valid YAML"):
        load(broken)
    with pytest.raises(QueueFileError, match="must map queue names"):
        parse(FILE, ["support"])


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def test_opening_hours_follow_the_queues_time_zone_across_daylight_saving():
    book = parse(FILE, {"support": {"hours": {"timezone": "Europe/Berlin",
                                              "mon-fri": "09:00-17:30", "sat": "10:00-14:00"}}})
    support = book.get("support")
    assert support.open_at(at("2026-12-07T08:30:00+00:00"))  # Monday 09:30 in Berlin (CET)
    assert not support.open_at(at("2026-12-07T07:30:00+00:00"))  # 08:30 in Berlin
    assert support.open_at(at("2026-07-06T07:30:00+00:00"))  # 09:30 in summer (CEST)
    assert not support.open_at(at("2026-12-07T16:30:00+00:00"))  # 17:30: closed at the end
    assert support.open_at(at("2026-12-05T12:00:00+00:00"))  # Saturday 13:00
    assert not support.open_at(at("2026-12-06T12:00:00+00:00"))  # Sunday


def test_a_day_range_may_wrap_the_week_and_a_span_may_run_to_midnight():
    book = parse(FILE, {"night": {"hours": {"timezone": "UTC", "fri-mon": "20:00-24:00"}}})
    night = book.get("night")
    assert night.open_at(at("2026-12-06T23:59:00+00:00"))  # Sunday
    assert night.open_at(at("2026-12-07T20:00:00+00:00"))  # Monday
    assert not night.open_at(at("2026-12-08T21:00:00+00:00"))  # Tuesday
