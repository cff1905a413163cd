"""Conversation tokens and verified visitor identity."""

from __future__ import annotations

import hashlib
import hmac

from itsdangerous import BadSignature, URLSafeTimedSerializer

TOKEN_SALT = "concierge.conversation"


class Tokens:
    """Sign and read conversation tokens: whoever holds one can read that conversation."""

    def __init__(self, secret_key: str, max_age_s: int) -> None:
        self.serializer = URLSafeTimedSerializer(secret_key, salt=TOKEN_SALT)
        self.max_age_s = max_age_s

    def make(self, cid: str) -> str:
        return self.serializer.dumps(cid)

    def read(self, token: str) -> str | None:
        """Return the conversation id of a good token, or None for a bad or expired one."""
        try:
            cid = self.serializer.loads(token, max_age=self.max_age_s)
        except BadSignature:  # also SignatureExpired
            return None
        return cid if isinstance(cid, str) else None


def identity_hash(secret: str, user_id: str) -> str:
    """Return hex(HMAC-SHA256(secret, user_id)), what a site's backend puts in `user_hash`."""
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def identity_verified(secret: str | None, user_id: str, claimed: str) -> bool:
    """Tell whether `claimed` is the right hash of `user_id` (never when no secret is set)."""
    if not secret or not user_id or not claimed:
        return False
    return hmac.compare_digest(identity_hash(secret, user_id), claimed.lower())
