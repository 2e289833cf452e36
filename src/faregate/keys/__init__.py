"""FareGate virtual keys: issued per team, stored as salted hashes, checked on every proxy request."""

from faregate.keys.credential import Credential, generate, parse
from faregate.keys.store import KeyRecord, KeyStore, open_key_store

__all__ = ["Credential", "KeyRecord", "KeyStore", "generate", "open_key_store", "parse"]
