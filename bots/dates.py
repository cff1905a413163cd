"""Dates as visitors type them: read in the flow's locale, impossible ones refused.

`parse_date` understands, in the locale (from Babel's CLDR data) and always also in English,
case- and accent-insensitive, with surrounding spaces and a trailing '.' or '!' ignored:

- ISO and other year-first dates: 2026-12-31, 2026/12/31
- day.month with dots, in every locale: 31.12.  31.12  31.12.2026  31.12.26  31. 12. 2026
- slashes and dashes in the order of the locale's short date pattern: 12/31 and 12/31/2026 in
  en and en-US, 31/12 in en-GB, fr, de, pt-BR, 31-12-2026 in nl
- month names, wide and abbreviated: 31 December, Dec 31 2026, 4th of December, 31. Dezember,
  4 de dezembro de 2026, 31-Dec-2026
- today, tomorrow, the day after tomorrow (en, de, fr, es, it, nl, pt) and "in 3 days"
- weekday names, wide and abbreviated, alone or with "this"/"next" and their translations:
  Friday, fri, am Freitag, nächsten Freitag, vendredi prochain

Decisions on ambiguous input:

- A two-digit year is 20xx. An explicit year must lie in 1900..2100.
- A date without a year is its next occurrence on or after today ("1.12." said on 1 December
  is today; 29 February is the next one in a leap year).
- A weekday is the nearest such day *after* today: "Friday" said on a Friday is in 7 days
  (people say "today" for today). "this Friday" and "next Friday" mean the same as "Friday",
  the least surprising reading for bookings.
- A weekday next to a date is a check: "Friday 4 December" must be a Friday, else the text
  names two different days and is unreadable. Likewise two different dates in one text.
- Small filler words may surround the date ("on the", "am", "den", "le", "el", "op", "no dia",
  commas); any other word makes the whole text unreadable. Nothing is guessed from a sentence.
- Dots always mean day.month, even where the locale writes month first; slashes and dashes
  always follow the locale's order ("31/12" in en-US is impossible, not read as 31 December).
- A day of the month without a month ("the 4th"), a month alone, a two-digit year after a month
  name ("Dec 31 26"), '?' and text longer than MAX_CHARS are unreadable.
- Locales without spaces between words (Chinese, Japanese) get only the numeric and English
  forms; one-letter abbreviations (Hungarian "P") are left out as too easy to hit by chance.
"""

from __future__ import annotations

import datetime
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, get_date_format, get_day_names, get_month_names

UNREADABLE = "unreadable"
IMPOSSIBLE = "impossible"
PAST = "past"
WEEKEND = "weekend"

MAX_CHARS = 100  # no one types a date this long; longer text is refused before any regex
FIRST_YEAR, LAST_YEAR = 1900, 2100  # an explicit year outside these is a typo

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_LONGEST_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # in any year


class DateProblem(Exception):
    """Why a text is not an acceptable date.

    `kind` is one of "unreadable", "impossible", "past", "weekend"; `text` a short
    plain-English detail for logs and tests ("there is no 31 February"); `meant` the date the
    visitor meant when there is one ("past", "weekend"), else None.
    """

    def __init__(self, kind: str, text: str, meant: datetime.date | None = None) -> None:
        super().__init__(text)
        self.kind = kind
        self.text = text
        self.meant = meant

    def __repr__(self) -> str:
        return f"DateProblem({self.kind!r}, {self.text!r}, {self.meant!r})"


# --- words of our own ----------------------------------------------------------------------
# CLDR has relative day names, but Babel does not expose them, so here is a small table per
# language; the first word with offset 1 is the one examples() shows. English always counts.

RELATIVE: dict[str, dict[str, int]] = {
    "en": {"tomorrow": 1, "today": 0, "tmrw": 1, "tmr": 1, "day after tomorrow": 2},
    "de": {"morgen": 1, "heute": 0, "übermorgen": 2, "uebermorgen": 2},
    "fr": {"demain": 1, "aujourd'hui": 0, "après-demain": 2},
    "es": {"mañana": 1, "hoy": 0, "pasado mañana": 2},
    "it": {"domani": 1, "oggi": 0, "dopodomani": 2, "dopo domani": 2},
    "nl": {"morgen": 1, "vandaag": 0, "overmorgen": 2},
    "pt": {"amanhã": 1, "hoje": 0, "depois de amanhã": 2},
}
# "this"/"next" before (or after) a weekday; they change nothing (see the module's docstring)
QUALIFIERS: dict[str, tuple[str, ...]] = {
    "en": ("this", "next", "coming", "upcoming"),
    "de": ("diesen", "dieser", "diese", "nächsten", "nächster", "nächste", "naechsten",
           "naechster", "kommenden", "kommender"),
    "fr": ("ce", "prochain", "prochaine"),
    "es": ("este", "próximo", "que viene"),
    "it": ("questo", "prossimo"),
    "nl": ("deze", "volgende", "komende", "aanstaande"),
    "pt": ("este", "esta", "neste", "nesta", "próximo", "próxima"),
}
# small words allowed anywhere around a date
FILLERS: dict[str, tuple[str, ...]] = {
    "en": ("on", "the", "of"),
    "de": ("am", "den", "der", "dem"),
    "fr": ("le",),
    "es": ("el", "de", "del"),
    "it": ("il",),
    "nl": ("op", "de"),
    "pt": ("de", "no", "na", "dia"),
}
# "in 3 days": the word before the number, and the unit after it
IN_WORDS: dict[str, tuple[str, ...]] = {
    "en": ("in",), "de": ("in",), "fr": ("dans",), "es": ("en", "dentro de"),
    "it": ("tra", "fra"), "nl": ("over", "in"), "pt": ("em", "daqui a"),
}
DAY_UNITS: dict[str, tuple[str, ...]] = {
    "en": ("day", "days"), "de": ("tag", "tage", "tagen"), "fr": ("jour", "jours"),
    "es": ("día", "días"), "it": ("giorno", "giorni"), "nl": ("dag", "dagen"),
    "pt": ("dia", "dias"),
}
# English abbreviations people use beyond CLDR's
ENGLISH_MONTHS = {"sept": 9}
ENGLISH_WEEKDAYS = {"tues": 1, "weds": 2, "thur": 3, "thurs": 3}


# --- normalizing and splitting -------------------------------------------------------------

_APOSTROPHES = str.maketrans("", "", "'’`")
_DOT_SPACE_DIGIT = re.compile(r"(?<=[0-9]\.) +(?=[0-9])")  # "31. 12. 2026" -> "31.12.2026"
_WORD_DASH = re.compile(r"(?<=[^\W\d_])-|-(?=[^\W\d_])")  # "sexta-feira", "31-Dec-2026"
# One token at a time; every part is linear (no nested repetition over the same characters).
_TOKEN = re.compile(
    r"(?P<num>[0-9]+(?:[./-][0-9]+)*\.?"
    r"(?:(?:st|nd|rd|th|eme|er|re|e|o|a)(?![^\W\d_])|°)?)"  # 4th, 1er, 4ème, 4º, 4°
    r"|(?P<word>[^\W\d_]+\.?)"
    r"|(?P<sep>[,;])"
    r"|(?P<space>\s+)"
    r"|(?P<other>.)",
    re.DOTALL,
)
_YMD = re.compile(r"([0-9]{4})([./-])([0-9]{1,2})\2([0-9]{1,2})\.?")
_DOTS = re.compile(r"([0-9]{1,2})\.([0-9]{1,2})(?:\.(?:([0-9]{2}|[0-9]{4})\.?)?)?")
_SLASHES = re.compile(r"([0-9]{1,2})([/-])([0-9]{1,2})(?:\2([0-9]{2}|[0-9]{4}))?")
_ORDINAL = re.compile(r"([0-9]{1,2})(?:st|nd|rd|th|eme|er|re|e|o|a|°|\.)")


def _fold(text: str) -> str:
    """Casefold, drop accents and apostrophes, and make every decimal digit an ASCII one."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    out = []
    for ch in decomposed:
        if unicodedata.combining(ch) or unicodedata.category(ch) == "Cf":
            continue  # accents, and marks of direction and zero-width joins
        digit = unicodedata.decimal(ch, None)
        out.append(str(digit) if digit is not None else ch)
    return "".join(out).translate(_APOSTROPHES)


def _clean(text: str) -> str:
    """Fold a text and tidy what does not change its meaning (see the module's docstring)."""
    folded = _fold(text).strip().rstrip(" .!")
    folded = _DOT_SPACE_DIGIT.sub("", folded)
    return _WORD_DASH.sub(" ", folded)


def _words(name: str) -> tuple[str, ...] | None:
    """A name from a table as the tuple of words it is looked up by, or None if it has digits
    or other signs (such names cannot be typed as words, "1月")."""
    words = []
    for match in _TOKEN.finditer(_clean(name)):
        kind = match.lastgroup
        if kind == "word":
            words.append(match.group().rstrip("."))
        elif kind != "space":
            return None
    return tuple(words) or None


# --- per-locale tables ---------------------------------------------------------------------


@dataclass(slots=True)
class _Tables:
    # words or phrases -> their meanings: "month" -> 1..12, "weekday" -> 0..6 (Monday 0),
    # "rel" -> days from today, "qual", "fill", "in", "unit" -> 0
    phrases: dict[tuple[str, ...], dict[str, int]] = field(default_factory=dict)
    longest: int = 1  # the most words in one phrase
    month_first: bool = False  # 12/31 rather than 31/12
    separator: str = "/"  # of the short date pattern: ".", "/" or "-"
    tomorrow: str = "tomorrow"  # as examples() shows it

    def add(self, name: str, kind: str, value: int = 0) -> None:
        words = _words(name)
        if words is None or len(words) == 1 and len(words[0]) < 2:
            return
        self.phrases.setdefault(words, {})[kind] = value
        self.longest = max(self.longest, len(words))


@lru_cache(maxsize=256)
def _locale(tag: str) -> Locale:
    """Babel's locale for a tag in any case, with '-' or '_'; English for what is not one."""
    parts = tag.strip().replace("-", "_").split("_") if isinstance(tag, str) else [""]
    if not all(parts):  # "", "de_", "de__CH": malformed
        return Locale("en")
    # the longest prefix Babel knows: "de-CH-u-ca-gregory" is still de_CH
    while parts:
        try:
            found = Locale.parse("_".join(parts))
        except (UnknownLocaleError, ValueError, TypeError):
            parts.pop()
            continue
        if found.language != "root":
            return found
        break
    return Locale("en")


def _add_names(tables: _Tables, locale: Locale) -> None:
    for width in ("wide", "abbreviated"):
        for context in ("format", "stand-alone"):
            for number, name in get_month_names(width, context, locale).items():
                tables.add(name, "month", number)
            for number, name in get_day_names(width, context, locale).items():
                tables.add(name, "weekday", number)
                # "sexta-feira" is also typed "sexta"
                words = _words(name)
                if words and len(words) > 1:
                    tables.add(words[0], "weekday", number)


def _add_words(tables: _Tables, language: str) -> None:
    for name, offset in RELATIVE.get(language, {}).items():
        tables.add(name, "rel", offset)
    for kind, table in (("qual", QUALIFIERS), ("fill", FILLERS), ("in", IN_WORDS),
                        ("unit", DAY_UNITS)):
        for name in table.get(language, ()):
            tables.add(name, kind)


@lru_cache(maxsize=64)
def _tables(name: str) -> _Tables:
    """The words and date order of a locale (by its Babel name), with English words too."""
    locale = Locale.parse(name)
    english = Locale("en")
    tables = _Tables()
    # English first, so that the locale's own meaning of a word wins where both have one
    _add_names(tables, english)
    for word, number in ENGLISH_MONTHS.items():
        tables.add(word, "month", number)
    for word, number in ENGLISH_WEEKDAYS.items():
        tables.add(word, "weekday", number)
    _add_words(tables, "en")
    if locale.language != "en":
        _add_names(tables, locale)
        _add_words(tables, locale.language)
    tomorrow = [w for w, offset in RELATIVE.get(locale.language, {}).items() if offset == 1]
    if tomorrow:
        tables.tomorrow = tomorrow[0]

    # the order of day and month, and their separator, from the short date pattern
    pattern = re.sub(r"'[^']*'", "", get_date_format("short", locale=locale).pattern)
    day, month = pattern.find("d"), max(pattern.find("M"), pattern.find("L"))
    tables.month_first = 0 <= month < day
    tables.separator = next((ch for ch in pattern if ch in "./-"), "/")
    return tables


def _tables_for(locale: str) -> _Tables:
    return _tables(str(_locale(locale)))


# --- reading -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Token:
    text: str
    date: tuple[int, int, int | None] | None = None  # a whole numeric date: day, month, year
    day: int | None = None  # one or two digits, maybe an ordinal: a day of the month
    count: int | None = None  # a plain number of up to three digits ("in 3 days")
    year: int | None = None  # four digits
    words: Mapping[str, int] = field(default_factory=dict)  # a word's meanings, see _Tables


def _unreadable(detail: str) -> DateProblem:
    return DateProblem(UNREADABLE, detail)


def _year(digits: str | None) -> int | None:
    if digits is None:
        return None
    return 2000 + int(digits) if len(digits) == 2 else int(digits)


def _number(text: str, tables: _Tables) -> _Token:
    """Classify a run of digits (and dots, slashes, dashes, an ordinal's ending)."""
    if text.isdigit() and len(text) <= 4:
        value = int(text)
        if len(text) == 4:
            return _Token(text, year=value)
        return _Token(text, day=value if len(text) <= 2 else None, count=value)
    if match := _ORDINAL.fullmatch(text):
        return _Token(text, day=int(match[1]))
    if match := _YMD.fullmatch(text):
        return _Token(text, date=(int(match[4]), int(match[3]), int(match[1])))
    if match := _DOTS.fullmatch(text):
        return _Token(text, date=(int(match[1]), int(match[2]), _year(match[3])))
    if match := _SLASHES.fullmatch(text):
        first, second = int(match[1]), int(match[3])
        day, month = (second, first) if tables.month_first else (first, second)
        return _Token(text, date=(day, month, _year(match[4])))
    raise _unreadable(f"not a date: {text!r}")


def _tokens(text: str, tables: _Tables) -> list[_Token]:
    raw: list[tuple[str, str]] = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup or "other"
        if kind == "other":
            raise _unreadable(f"unexpected {match.group()!r}")
        if kind in ("num", "word"):
            raw.append((kind, match.group()))
    tokens = []
    i = 0
    while i < len(raw):
        kind, value = raw[i]
        if kind == "num":
            tokens.append(_number(value, tables))
            i += 1
            continue
        # the longest known phrase of words starting here
        for size in range(min(tables.longest, len(raw) - i), 0, -1):
            chunk = raw[i:i + size]
            if any(k != "word" for k, _ in chunk):
                continue
            meanings = tables.phrases.get(tuple(w.rstrip(".") for _, w in chunk))
            if meanings:
                tokens.append(_Token(value, words=meanings))
                i += size
                break
        else:
            raise _unreadable(f"unknown word {value.rstrip('.')!r}")
    return tokens


@dataclass(slots=True)
class _Reading:
    dates: list[tuple[int, int, int | None]] = field(default_factory=list)  # day, month, year
    offsets: list[int] = field(default_factory=list)  # days after today
    weekdays: list[int] = field(default_factory=list)
    qualified: bool = False  # "this" / "next" was said


def _skip_fillers(tokens: list[_Token], i: int) -> int:
    while i < len(tokens) and "fill" in tokens[i].words:
        i += 1
    return i


def _year_after(tokens: list[_Token], i: int) -> tuple[int | None, int]:
    """An optional four-digit year at tokens[i] (fillers before it allowed), and what follows."""
    j = _skip_fillers(tokens, i)
    if j < len(tokens) and tokens[j].year is not None:
        return tokens[j].year, j + 1
    return None, i


def _read(tokens: list[_Token]) -> _Reading:
    """Find the date expressions in the tokens; any token that fits none makes it unreadable."""
    out = _Reading()
    i, n = 0, len(tokens)
    while i < n:
        tok = tokens[i]
        if tok.date is not None:
            out.dates.append(tok.date)
            i += 1
            continue
        if ("in" in tok.words and i + 2 < n and tokens[i + 1].count is not None
                and "unit" in tokens[i + 2].words):
            out.offsets.append(tokens[i + 1].count or 0)
            i += 3
            continue
        if "rel" in tok.words:
            out.offsets.append(tok.words["rel"])
            i += 1
            continue
        j = _skip_fillers(tokens, i + 1)
        nxt = tokens[j] if j < n else None
        if tok.day is not None and nxt is not None and "month" in nxt.words:
            year, i = _year_after(tokens, j + 1)
            out.dates.append((tok.day, nxt.words["month"], year))
            continue
        if "month" in tok.words and nxt is not None and nxt.day is not None:
            year, i = _year_after(tokens, j + 1)
            out.dates.append((nxt.day, tok.words["month"], year))
            continue
        # a word that is a month and a weekday ("mar" in Spanish) is a weekday when alone
        if "weekday" in tok.words:
            out.weekdays.append(tok.words["weekday"])
        elif "qual" in tok.words:
            out.qualified = True
        elif "fill" not in tok.words:
            raise _unreadable(f"not part of a date: {tok.text!r}")
        i += 1
    return out


def _resolve(day: int, month: int, year: int | None, today: datetime.date) -> datetime.date:
    """The date of a day, month and maybe year; without a year the next one from today on."""
    if not 1 <= month <= 12:
        raise DateProblem(IMPOSSIBLE, f"there is no month {month}")
    if not 1 <= day <= 31:
        raise DateProblem(IMPOSSIBLE, f"there is no day {day}")
    name = MONTHS[month - 1]
    if day > _LONGEST_MONTH[month - 1]:
        raise DateProblem(IMPOSSIBLE, f"there is no {day} {name}")
    if year is not None:
        if not FIRST_YEAR <= year <= LAST_YEAR:
            raise DateProblem(IMPOSSIBLE, f"the year {year} is out of range")
        try:
            return datetime.date(year, month, day)
        except ValueError:
            raise DateProblem(IMPOSSIBLE, f"there is no {day} {name} {year}") from None
    # 29 February needs a leap year: at most 8 years ahead (1896 -> 1904)
    for candidate in range(today.year, today.year + 9):
        try:
            found = datetime.date(candidate, month, day)
        except ValueError:
            continue
        if found >= today:
            return found
    raise DateProblem(IMPOSSIBLE, f"there is no {day} {name} ahead")  # only near year 9999


def _shift(today: datetime.date, days: int) -> datetime.date:
    try:
        return today + datetime.timedelta(days=days)
    except OverflowError:
        raise DateProblem(IMPOSSIBLE, f"{days} days from {today} is out of range") from None


def _after(today: datetime.date, weekday: int) -> datetime.date:
    """The nearest day after today that is `weekday` (a week ahead when today is one)."""
    return _shift(today, (weekday - today.weekday() - 1) % 7 + 1)


def parse_date(text: str, locale: str, today: datetime.date, *, future: bool = False,
               weekday: bool = False) -> datetime.date:
    """Return the date `text` names, read in `locale` (a BCP 47 tag such as "en", "en-US",
    "de-CH", "fr"), relative to `today` (the flow's today in its time zone).

    `future` refuses today and earlier days ("past"), `weekday` Saturdays and Sundays
    ("weekend"). Raise DateProblem; see the module's docstring for what is understood.
    """
    if isinstance(today, datetime.datetime):
        today = today.date()
    if not isinstance(text, str) or len(text) > MAX_CHARS:
        raise _unreadable("too long" if isinstance(text, str) else "not a text")
    tables = _tables_for(locale)
    cleaned = _clean(text)
    if len(cleaned) > 2 * MAX_CHARS:  # NFKD can lengthen a text (ligatures)
        raise _unreadable("too long")
    reading = _read(_tokens(cleaned, tables))

    named = {_resolve(d, m, y, today) for d, m, y in reading.dates}
    named |= {_shift(today, offset) for offset in reading.offsets}
    if named:
        # weekdays beside a date only check it: "Friday 4 December" must be a Friday
        for number in reading.weekdays:
            for day in named:
                if day.weekday() != number:
                    raise _unreadable(f"{day} is a {WEEKDAYS[day.weekday()]}, "
                                      f"not a {WEEKDAYS[number]}")
    else:
        named = {_after(today, number) for number in reading.weekdays}
    if not named:
        raise _unreadable("no date")
    if len(named) > 1:
        raise _unreadable("two different dates: " + ", ".join(sorted(map(str, named))))
    if reading.qualified and not reading.weekdays:
        raise _unreadable("'this' or 'next' without a weekday")
    (day,) = named

    if future and day <= today:
        raise DateProblem(PAST, f"{day} is not after {today}", day)
    if weekday and day.weekday() >= 5:
        raise DateProblem(WEEKEND, f"{day} is a {WEEKDAYS[day.weekday()]}", day)
    return day


# --- showing -------------------------------------------------------------------------------


def describe(day: datetime.date, locale: str, form: str = "full") -> str:
    """The date as a person of `locale` reads it: 'Friday, December 4, 2026' (en),
    'Friday, 4 December 2026' (en-GB), 'Freitag, 4. Dezember 2026' (de); `form` is one of
    CLDR's full, long, medium and short."""
    return format_date(day, format=form, locale=_locale(locale))


def examples(locale: str) -> tuple[str, str]:
    """Two samples of what may be typed, for a built-in error message: a day and month in the
    locale's own order and separator, and its word for tomorrow (English where we have none).

    en-US ('12/31', 'tomorrow'), en-GB ('31/12', 'tomorrow'), de ('31.12.', 'morgen'),
    nl ('31-12', 'morgen'). Both are read by parse_date in that locale.
    """
    tables = _tables_for(locale)
    if tables.separator == ".":
        sample = "31.12."  # dots always mean day.month, whatever the locale's order
    elif tables.month_first:
        sample = f"12{tables.separator}31"
    else:
        sample = f"31{tables.separator}12"
    return sample, tables.tomorrow
