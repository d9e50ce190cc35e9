"""Security primitives: password hashing, provider-key encryption, API keys and session tokens."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import bcrypt
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from mindroute.i18n import _l

BCRYPT_COST = 12
API_KEY_PREFIX = "mr-"
API_KEY_SECRET_BYTES = 32
API_KEY_DISPLAY_CHARS = 10  # "mr-" and the first 7 characters of the secret part
SESSION_TOKEN_BYTES = 32


@cache
def _dummy_hash() -> bytes:
    """A valid bcrypt hash of a random password: checked against when an email is unknown, so a
    failed sign-in costs the same time whether or not the account exists. Made on first use, not at
    import (a bcrypt at cost 12 is ~0.25 s that every CLI command would pay)."""
    return bcrypt.hashpw(secrets.token_bytes(16).hex().encode(), bcrypt.gensalt(BCRYPT_COST))


# --- passwords ------------------------------------------------------------------------------


def hash_password(password: str) -> str:
    """bcrypt at cost 12. Callers validate the policy first (bcrypt silently cuts at 72 bytes)."""
    encoded = password.encode("utf-8")
    if len(encoded) > 72:
        raise ValueError("password longer than 72 bytes cannot be hashed without truncation")
    return bcrypt.hashpw(encoded, bcrypt.gensalt(BCRYPT_COST)).decode("ascii")


def verify_password(password: str, password_hash: str | None) -> bool:
    """True if `password` matches; takes a bcrypt's time even when there is no hash."""
    encoded = password.encode("utf-8")
    if password_hash is None or len(encoded) > 72:
        bcrypt.checkpw(b"x", _dummy_hash())
        return False
    try:
        return bcrypt.checkpw(encoded, password_hash.encode("ascii"))
    except ValueError:  # not a bcrypt hash
        bcrypt.checkpw(b"x", _dummy_hash())
        return False


# --- provider API keys, encrypted at rest ---------------------------------------------------


class DecryptionError(Exception):
    """A stored secret could not be decrypted: tampered with, or encrypted under another key."""


class SecretBox:
    """Encrypts provider API keys with Fernet; several keys (newest first) allow rotation."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("at least one secret key is needed")
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            # Never echo the ciphertext: it says nothing useful and belongs to the database.
            raise DecryptionError(
                _l(
                    "a stored provider key could not be decrypted: it was changed in the database, "
                    "or {setting} does not hold the key it was encrypted with",
                    setting="MINDROUTE_SECRET_KEY",
                )
            ) from None

    def rotate(self, ciphertext: str) -> str:
        """Re-encrypt under the newest key."""
        try:
            return self._fernet.rotate(ciphertext.encode("ascii")).decode("ascii")
        except InvalidToken:
            raise DecryptionError(
                _l(
                    "a stored provider key could not be decrypted with any configured key; "
                    "keep the old key in {setting} (after the new one) while rotating",
                    setting="MINDROUTE_SECRET_KEY",
                )
            ) from None


def mask_secret(plaintext: str | None) -> str:
    """Only the last 4 characters, for showing that a key is set."""
    if not plaintext:
        return ""
    return "••••" + plaintext[-4:] if len(plaintext) > 8 else "••••"


# --- MindRoute API keys and session tokens --------------------------------------------------


def digest(token: str) -> str:
    """SHA-256 hex digest: what the database keeps of API keys and session tokens."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class NewApiKey:
    plaintext: str  # shown to the user once, never stored
    digest: str
    prefix: str


def generate_api_key() -> NewApiKey:
    plaintext = API_KEY_PREFIX + secrets.token_urlsafe(API_KEY_SECRET_BYTES)
    return NewApiKey(plaintext=plaintext, digest=digest(plaintext), prefix=plaintext[:API_KEY_DISPLAY_CHARS])


def looks_like_api_key(candidate: str) -> bool:
    return candidate.startswith(API_KEY_PREFIX) and len(candidate) > len(API_KEY_PREFIX) + 20


def generate_session_token() -> tuple[str, str]:
    """A new session token and its digest; only the digest is stored."""
    token = secrets.token_urlsafe(SESSION_TOKEN_BYTES)
    return token, digest(token)
