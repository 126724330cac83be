"""National ids are encrypted bound to their row, and keys rotate (HMS_PHI_KEY)."""

from __future__ import annotations

import base64
import os
import uuid
from typing import Any

import pytest

from hms.persistence.cipher import Cipher, CipherError
from hms.settings import Settings, SettingsError, phi_keys

OLD, NEW = os.urandom(32), os.urandom(32)
HOSPITAL, PATIENT = uuid.uuid4(), uuid.uuid4()
PLACE: dict[str, Any] = {"what": "national_id", "hospital_id": HOSPITAL, "row_id": PATIENT}


def test_a_value_decrypts_in_its_place_only() -> None:
    cipher = Cipher([NEW])
    sealed = cipher.encrypt("123456789", **PLACE)
    assert b"123456789" not in sealed
    assert cipher.encrypt("123456789", **PLACE) != sealed  # a fresh nonce each time
    assert cipher.decrypt(sealed, **PLACE) == "123456789"
    for moved in (
        {**PLACE, "row_id": uuid.uuid4()},
        {**PLACE, "hospital_id": uuid.uuid4()},
        {**PLACE, "what": "phone"},
    ):
        with pytest.raises(CipherError, match="does not belong here"):
            cipher.decrypt(sealed, **moved)
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(CipherError, match="altered"):
        cipher.decrypt(tampered, **PLACE)


def test_keys_rotate_new_first_old_still_opens() -> None:
    sealed = Cipher([OLD]).encrypt("555666777", **PLACE)
    rotated = Cipher([NEW, OLD])
    assert rotated.decrypt(sealed, **PLACE) == "555666777"
    assert rotated.encrypt("1", **PLACE)[1:5] == Cipher([NEW]).encrypt("1", **PLACE)[1:5]
    with pytest.raises(CipherError, match="key this server lacks"):
        Cipher([NEW]).decrypt(sealed, **PLACE)
    with pytest.raises(CipherError, match="known format"):
        rotated.decrypt(b"\x02" + sealed[1:], **PLACE)


def test_without_a_key_nothing_is_encrypted() -> None:
    cipher = Cipher([])
    assert not cipher.ready
    with pytest.raises(CipherError, match="HMS_PHI_KEY"):
        cipher.encrypt("123456", **PLACE)


def test_the_setting_takes_32_byte_base64_keys() -> None:
    standard = base64.b64encode(OLD).decode()
    urlsafe = base64.urlsafe_b64encode(NEW).decode().rstrip("=")
    assert phi_keys(f"{urlsafe}, {standard}") == (NEW, OLD)
    assert phi_keys("") == ()
    env = {"HMS_PHI_KEY": standard}
    assert Settings.from_env(env).phi_keys == (OLD,)
    for bad in ("short", base64.b64encode(os.urandom(16)).decode(), "!!!!"):
        with pytest.raises(SettingsError, match="32 bytes"):
            Settings.from_env({"HMS_PHI_KEY": bad})
