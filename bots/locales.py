"""Languages of a flow: locale tags, choosing a conversation's language, texts per language.

A flow names the languages it speaks (`locales: [en, de]`, the first the default) and may
give any text a person reads once per language. A visitor's locale (from the widget's
`hello`) picks one: the exact tag, else the first of the flow's with the same language
("de-AT" gets "de", "pt-PT" gets "pt-BR"), else the default. See docs/flows.md, "Languages".
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Mapping
from typing import Any

# BCP 47 as people write it: a language of 2-3 letters, then subtags (script, region, variant)
# of 1-8 letters or digits, joined by '-' (or '_', as browsers and Babel sometimes do).
_TAG = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$")
MAX_TAG = 35  # the protocol's limit for a hello's locale


def canonical(tag: Any) -> str | None:
    """Return a locale tag in its usual case ("de-CH", "zh-Hant-TW"), or None if it is not one."""
    if not isinstance(tag, str) or len(tag) > MAX_TAG:
        return None
    return _canonical(tag)


@functools.lru_cache(maxsize=1024)  # every turn asks it of the visitor's tag: a few, often
def _canonical(tag: str) -> str | None:
    if not _TAG.match(tag.strip()):
        return None
    parts = re.split(r"[-_]", tag.strip())
    out = [parts[0].lower()]
    for index, part in enumerate(parts[1:], 1):
        if len(part) == 1:  # an extension (-u-, -x-): the rest is its own, in lower case
            out += [p.lower() for p in parts[index:]]
            break
        if len(part) == 4 and part.isalpha():
            out.append(part.title())  # a script, such as Hant
        elif len(part) == 2 and part.isalpha() or len(part) == 3 and part.isdigit():
            out.append(part.upper())  # a region, such as CH or 419
        else:
            out.append(part.lower())
    return "-".join(out)


def language(tag: str) -> str:
    """The language subtag of a tag: "de" of "de-CH"."""
    return tag.split("-", 1)[0].lower()


def pick(wanted: Any, offered: tuple[str, ...]) -> str:
    """Choose the flow's locale for a visitor who asked for `wanted` (offered is not empty)."""
    tag = canonical(wanted)
    if tag is None:
        return offered[0]
    if tag in offered:
        return tag
    lang = language(tag)
    for candidate in offered:
        if language(candidate) == lang:
            return candidate
    return offered[0]


def closest(key: Any, offered: tuple[str, ...]) -> str | None:
    """The flow's locale that a key it does not name was likely meant as, if any."""
    tag = canonical(key)
    if tag is not None:
        same = [candidate for candidate in offered if language(candidate) == language(tag)]
        if len(same) == 1:
            return same[0]  # "de" for "de-DE"
    written = str(key).lower()
    for candidate in offered:  # "ed" for "de": two letters swapped
        if len(written) == len(candidate) and sorted(written) == sorted(candidate.lower()):
            return candidate
    close = difflib.get_close_matches(written, offered, n=1, cutoff=0.6)
    return close[0] if close else None


def suggest_locale(key: Any, offered: tuple[str, ...]) -> str:
    """Return " (did you mean 'x'? ...)" for a locale the flow does not name, or ""."""
    meant = closest(key, offered)
    if meant is None:
        return ""
    tag = canonical(key)
    if tag is not None and tag == language(tag) and language(meant) == tag:
        return (f" (did you mean '{meant}'? Or write '{tag}' in locales at the top instead: "
                f"it serves every {tag}-... visitor)")
    return f" (did you mean '{meant}'?)"


def regional(asked: Any, locale: str | None) -> str | None:
    """The visitor's own tag where it is in the conversation's language (en-GB for en), else
    the conversation's locale: how dates are read and written."""
    tag = canonical(asked)
    if tag is not None and locale and language(tag) == language(locale):
        return tag
    return locale  # None in a flow without locales: its texts' language is unknown


class Localized:
    """A text an author gave once per language: renders the conversation's language.

    It renders like a Template (`render(context)`): the context's `locale` picks the text,
    and a language without one (allowed only with `fallback_locale`) gets the fallback's.
    """

    __slots__ = ("texts", "fallback", "pos")

    def __init__(self, texts: Mapping[str, Any], fallback: str, pos: Any) -> None:
        self.texts = dict(texts)  # locale -> Template
        self.fallback = fallback if fallback in self.texts else next(iter(self.texts))
        self.pos = pos

    def choose(self, locale: str | None) -> Any:
        return self.texts.get(locale or "") or self.texts[self.fallback]

    def render(self, context: dict[str, Any]) -> str:
        return self.choose(context.get("locale")).render(context)

    @property
    def source(self) -> str:
        """The text in the fallback language, for pictures and messages about the flow."""
        return self.choose(None).source


# What the bot itself says, in the languages Concierge ships; others get English. An author
# replaces each of them with their own words (validate's `error`, a state's `else`).
BUILTIN: dict[str, dict[str, str]] = {
    "en": {
        "email": "That doesn't look like an email address (like name@example.com).",
        "phone": "That doesn't look like a phone number.",
        "number": "Please answer with a number.",
        "integer": "Please answer with a whole number.",
        "yes_no": "Please answer yes or no.",
        "regex": "Sorry, that isn't a valid answer.",
        "choices": "Please pick one of: {choices}.",
        "date": "Please give a date, like {example} or tomorrow.",
        "date_impossible": "That date doesn't exist. Please give another one.",
        "date_past": "Please give a day after today.",
        "date_weekend": "Please give a weekday, Monday to Friday.",
        "else": "Sorry, I didn't catch that.",
        "restart": "Sorry, this conversation was updated in the meantime. Let's start again.",
    },
    "de": {
        "email": "Das sieht nicht nach einer E-Mail-Adresse aus (wie name@example.com).",
        "phone": "Das sieht nicht nach einer Telefonnummer aus.",
        "number": "Bitte antworten Sie mit einer Zahl.",
        "integer": "Bitte antworten Sie mit einer ganzen Zahl.",
        "yes_no": "Bitte antworten Sie mit Ja oder Nein.",
        "regex": "Das ist leider keine gültige Antwort.",
        "choices": "Bitte wählen Sie eine dieser Antworten: {choices}.",
        "date": "Bitte nennen Sie ein Datum, etwa {example} oder morgen.",
        "date_impossible": "Dieses Datum gibt es nicht. Bitte nennen Sie ein anderes.",
        "date_past": "Bitte nennen Sie einen Tag nach heute.",
        "date_weekend": "Bitte nennen Sie einen Werktag, Montag bis Freitag.",
        "else": "Entschuldigung, das habe ich nicht verstanden.",
        "restart": "Dieses Gespräch wurde inzwischen geändert. Fangen wir noch einmal an.",
    },
}


def builtin(key: str, locale: str | None) -> str:
    """The bot's own words for `key` in `locale`'s language, else in English."""
    texts = BUILTIN.get(language(locale) if locale else "en", BUILTIN["en"])
    return texts.get(key, BUILTIN["en"][key])


def speaks(locale: str) -> bool:
    """Tell whether the bot's own words exist in `locale`'s language."""
    return language(locale) in BUILTIN
