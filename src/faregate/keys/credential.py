"""What a FareGate virtual key looks like, and how its secret is stored: never in plain.

A key is `fgk-<id>-<secret>`: `id` is 12 hex digits, public (it names the key in the ledger, in
budgets and in `faregate keys list`), and `secret` is 32 random bytes in URL-safe base64 (43
characters). The database keeps the id in plain and the secret only as SHA-256(salt || secret) with
a per-key random salt. A slow KDF (bcrypt, scrypt) exists to stretch guessable passwords; a 256-bit
random secret cannot be guessed, so one SHA-256 is enough and keeps an uncached check in
microseconds. The salt makes two keys' hashes differ even for equal secrets, and keeps a leaked
table useless for precomputed lookups.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import NamedTuple

PREFIX = "fgk-"
ID_HEX = 12
SECRET_BYTES = 32
SECRET_CHARS = 43  # len(token_urlsafe(32))
KEY_LENGTH = len(PREFIX) + ID_HEX + 1 + SECRET_CHARS
_HEX = frozenset("0123456789abcdef")


class Credential(NamedTuple):
    """A key split into its public id and its secret."""

    id: str
    secret: str


def generate() -> tuple[str, Credential]:
    """A new key (the string shown to the user once) and its parts."""
    key_id = secrets.token_hex(ID_HEX // 2)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    return f"{PREFIX}{key_id}-{secret}", Credential(key_id, secret)


def parse(key: str) -> Credential | None:
    """The parts of a well-formed key, or None: anything else is refused without a database read."""
    if len(key) != KEY_LENGTH or not key.startswith(PREFIX) or key[len(PREFIX) + ID_HEX] != "-":
        return None
    key_id = key[len(PREFIX) : len(PREFIX) + ID_HEX]
    if not _HEX.issuperset(key_id):
        return None
    return Credential(key_id, key[len(PREFIX) + ID_HEX + 1 :])


def new_salt() -> str:
    return secrets.token_hex(16)


def hash_secret(salt: str, secret: str) -> str:
    """SHA-256(salt || secret), hex: what the store keeps instead of the secret."""
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode("utf-8", "surrogatepass")).hexdigest()


def matches(salt: str, stored_hash: str, secret: str) -> bool:
    """Constant-time comparison, so response timing says nothing about how much of a hash matched."""
    return hmac.compare_digest(hash_secret(salt, secret), stored_hash)


def fingerprint(secret: str) -> bytes:
    """An in-memory digest of a verified secret: what the authenticator's cache compares against,
    so the cache never holds a secret either."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()
