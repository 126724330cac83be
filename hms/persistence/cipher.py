"""Encryption of values no read returns (the full national id): AES-256-GCM in the app.

The database, its backups and its logs only ever hold the ciphertext. Each value is bound to
its place (what it is, which hospital, which patient) as associated data, so a ciphertext
copied to another patient's row does not decrypt. A stored value starts with a format byte and
the first four bytes of its key's SHA-256, so keys can rotate: ``HMS_PHI_KEY`` lists the
current key first and older ones after it, and a value names the key that opens it.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT = b"\x01"
_NONCE = 12
_KEY_ID = 4


class CipherError(Exception):
    """A value could not be encrypted or decrypted (no key, an unknown key, tampered data)."""


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()[:_KEY_ID]


class Cipher:
    def __init__(self, keys: Sequence[bytes]) -> None:
        self._keys = {key_id(key): AESGCM(key) for key in keys}
        self._current = key_id(keys[0]) if keys else None

    @property
    def ready(self) -> bool:
        """Whether values can be encrypted at all (a key is configured)."""
        return self._current is not None

    def encrypt(self, plain: str, *, what: str, hospital_id: uuid.UUID, row_id: uuid.UUID) -> bytes:
        if self._current is None:
            raise CipherError("no encryption key is configured (HMS_PHI_KEY)")
        nonce = os.urandom(_NONCE)
        sealed = self._keys[self._current].encrypt(
            nonce, plain.encode(), _bound(what, hospital_id, row_id)
        )
        return FORMAT + self._current + nonce + sealed

    def decrypt(self, blob: bytes, *, what: str, hospital_id: uuid.UUID, row_id: uuid.UUID) -> str:
        if blob[:1] != FORMAT or len(blob) < 1 + _KEY_ID + _NONCE + 16:
            raise CipherError("the stored value is not in a known format")
        aead = self._keys.get(blob[1 : 1 + _KEY_ID])
        if aead is None:
            raise CipherError("the stored value was encrypted with a key this server lacks")
        nonce = blob[1 + _KEY_ID : 1 + _KEY_ID + _NONCE]
        try:
            plain = aead.decrypt(
                nonce, blob[1 + _KEY_ID + _NONCE :], _bound(what, hospital_id, row_id)
            )
        except InvalidTag:
            raise CipherError("the stored value does not belong here or was altered") from None
        return plain.decode()


def _bound(what: str, hospital_id: uuid.UUID, row_id: uuid.UUID) -> bytes:
    return b"hms|" + what.encode() + b"|" + hospital_id.bytes + row_id.bytes
