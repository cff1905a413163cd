"""How visitor input is compared: keywords, typed button titles, validators."""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

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

DEFAULT_ERRORS = {
    "email": "That doesn't look like an email address (like name@example.com).",
    "phone": "That doesn't look like a phone number.",
    "number": "Please answer with a number.",
    "integer": "Please answer with a whole number.",
    "yes_no": "Please answer yes or no.",
    "regex": "Sorry, that isn't a valid answer.",
    "choices": "Please pick one of: {choices}.",
}
NAMED = ("email", "phone", "number", "integer", "yes_no")
MAX_NUMBER_CHARS = 30  # past this no one is typing a quantity (and int() refuses 4,300 digits)


class Invalid(Exception):
    """An answer failed validation."""


@dataclass(slots=True)
class Validator:
    """Check an `ask` answer and convert it to the value to save."""

    kind: str  # email | phone | number | integer | yes_no | regex | choices
    error: str  # the built-in message
    pattern: re.Pattern[str] | None = None
    choices: tuple[str, ...] = ()
    message: Any = None  # the author's `error`, a template rendered when an answer is refused

    def check(self, text: str) -> Any:
        """Return the value to store, or raise Invalid."""
        answer = text.strip()
        value = getattr(self, f"_{self.kind}")(answer)
        if value is None:
            raise Invalid(self.error)
        return value

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
        folded = normalize(answer)
        for choice in self.choices:
            if normalize(choice) == folded:
                return choice
        return None
