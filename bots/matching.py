"""How visitor input is compared: keywords, typed button titles, validators."""

from __future__ import annotations

import datetime
import math
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from .locales import builtin

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalize(text: str) -> str:
    """Fold case and accents, turn punctuation into single spaces.

    "  Où est   MA commande?! " -> "ou est ma commande"
    """
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _NON_WORD.sub(" ", bare.casefold()).strip()


def has_phrase(normalized_text: str, normalized_phrase: str) -> bool:
    """Tell whether a phrase occurs as whole words in a text (both normalized)."""
    if not normalized_phrase:
        return False
    return f" {normalized_phrase} " in f" {normalized_text} "


# --- validators --------------------------------------------------------------------------

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]{2,}$")
_PHONE_CHARS = re.compile(r"^\+?[\d\s().\-/]+$")
_NUMBER = re.compile(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)$")
_INTEGER = re.compile(r"^[+-]?\d+$")
YES = frozenset("yes y yeah yep yup sure ok okay true correct oui si ja da".split())
NO = frozenset("no n nope nah false incorrect non nein nee".split())

NAMED = ("email", "phone", "number", "integer", "yes_no", "date")
MAX_NUMBER_CHARS = 30  # past this no one is typing a quantity (and int() refuses 4,300 digits)


class Invalid(Exception):
    """An answer failed validation; `key` names the bot's own message for it (bots/locales.py)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


@dataclass(slots=True)
class Validator:
    """Check an `ask` answer and convert it to the value to save."""

    kind: str  # email | phone | number | integer | yes_no | date | regex | choices
    pattern: re.Pattern[str] | None = None
    choices: tuple[str, ...] = ()  # what is stored: each choice in the flow's default language
    # for each language, the choices as its visitors read them (empty: the choices themselves)
    choice_texts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)  # normalized answer -> stored choice
    message: Any = None  # the author's `error`, a template rendered when an answer is refused
    future: bool = False  # date: a day after today
    weekday: bool = False  # date: Monday to Friday

    def check(self, text: str, locale: str | None = None, today: datetime.date | None = None
              ) -> Any:
        """Return the value to store, or raise Invalid.

        `locale` is the conversation's language and `today` the flow's today in its time
        zone; only dates need them.
        """
        answer = text.strip()
        if self.kind == "date":
            return self._date(answer, locale or "en", today or datetime.date.today())
        value = getattr(self, f"_{self.kind}")(answer)
        if value is None:
            raise Invalid(self.kind)
        return value

    def default_error(self, key: str, locale: str | None) -> str:
        """The bot's own words for a refused answer, in the conversation's language."""
        text = builtin(key, locale)
        if key == "choices":
            shown = self.choice_texts.get(locale or "", self.choices)
            return text.format(choices=", ".join(shown))
        if key == "date":
            from .dates import examples  # noqa: PLC0415 - only flows with dates need Babel

            return text.format(example=examples(locale or "en")[0])
        return text

    def _date(self, answer: str, locale: str, today: datetime.date) -> str:
        from .dates import DateProblem, parse_date  # noqa: PLC0415 - as above

        try:
            day = parse_date(answer, locale, today, future=self.future, weekday=self.weekday)
        except DateProblem as exc:
            raise Invalid("date" if exc.kind == "unreadable" else f"date_{exc.kind}") from exc
        return day.isoformat()

    def _email(self, answer: str) -> Any:
        return answer if _EMAIL.match(answer) else None

    def _phone(self, answer: str) -> Any:
        digits = sum(ch.isdigit() for ch in answer)
        return answer if _PHONE_CHARS.match(answer) and 6 <= digits <= 15 else None

    def _number(self, answer: str) -> Any:
        compact = answer.replace(" ", "")
        if len(compact) > MAX_NUMBER_CHARS or not _NUMBER.match(compact):
            return None
        if _INTEGER.match(compact):
            return int(compact)
        value = float(compact.replace(",", "."))
        return value if math.isfinite(value) else None

    def _integer(self, answer: str) -> Any:
        compact = answer.replace(" ", "")
        if len(compact) > MAX_NUMBER_CHARS or not _INTEGER.match(compact):
            return None
        return int(compact)

    def _yes_no(self, answer: str) -> Any:
        words = normalize(answer).split()
        if words and words[0] in YES:
            return True
        if words and words[0] in NO:
            return False
        return None

    def _regex(self, answer: str) -> Any:
        assert self.pattern is not None
        return answer if self.pattern.search(answer) else None

    def _choices(self, answer: str) -> Any:
        return self.aliases.get(normalize(answer))
