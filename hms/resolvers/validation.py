"""Input rules shared by the mutations; each failed rule becomes one VALIDATION problem.

The database re-checks what it can (CHECK, exclusion and foreign-key constraints); these rules
exist to give the caller a precise field and message, and to cover what SQL cannot see (formats,
"not in the future" relative to the request's clock).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
import uuid
from typing import TypeVar

from hms.resolvers.errors import BadUserInput
from hms.resolvers.outcomes import Problem, input_field, not_found
from hms.resolvers.relay import expect_global_id

MAX_NAME = 100
MAX_MRN = 32
MAX_EMAIL = 254
MAX_TEXT = 1000
MIN_REASON = 10
MAX_REASON = 500
_MRN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
# Deliberately loose (one @, a dot in the domain, no spaces): mail servers have the final word.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# E.164 with the separators people type: optional +, then 6-15 digits.
_PHONE = re.compile(r"\+?[0-9][0-9 ().-]*[0-9]")


S = TypeVar("S", str, str | None)


def bounded(argument: str, value: S, maximum: int) -> S:
    """A string argument of a read, refused (not truncated) past ``maximum`` characters."""
    if value is not None and len(value) > maximum:
        raise BadUserInput(
            f"'{argument}' must be at most {maximum} characters",
            argument=argument,
            maximum=maximum,
        )
    return value


class Checks:
    """Collects problems so the caller sees every broken rule at once, not one per round trip."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def fail(self, field: str, message: str) -> None:
        self.problems.append(Problem(input_field(field), message, "VALIDATION"))

    def name(self, field: str, value: str) -> str:
        value = value.strip()
        if not value:
            self.fail(field, "Must not be empty")
        elif len(value) > MAX_NAME:
            self.fail(field, f"Must be at most {MAX_NAME} characters")
        elif any(unicodedata.category(c) == "Cc" for c in value):
            self.fail(field, "Must not contain control characters")
        elif not any(unicodedata.category(c).startswith("L") for c in value):
            # Zero-width spaces and other invisible characters alone make no name.
            self.fail(field, "Must contain at least one letter")
        return value

    def mrn(self, field: str, value: str) -> str:
        value = value.strip()
        if not value:
            self.fail(field, "Must not be empty")
        elif len(value) > MAX_MRN:
            self.fail(field, f"Must be at most {MAX_MRN} characters")
        elif not _MRN.fullmatch(value):
            self.fail(
                field, "Use letters, digits and . _ / - only, starting with a letter or digit"
            )
        return value

    def email(self, field: str, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if len(value) > MAX_EMAIL or not _EMAIL.fullmatch(value):
            self.fail(field, "Must be an email address like name@example.org")
        return value

    def phone(self, field: str, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        digits = sum(c.isdigit() for c in value)
        if not _PHONE.fullmatch(value) or not 6 <= digits <= 15:
            self.fail(field, "Must be a phone number of 6 to 15 digits, optionally starting with +")
        return value

    def national_id(self, field: str, value: str | None) -> str | None:
        """Digits only (the spaces and dashes people type are dropped), 6 to 20 of them."""
        if value is None:
            return None
        digits = "".join(c for c in value.strip() if c not in " -")
        if not (digits.isascii() and digits.isdigit() and 6 <= len(digits) <= 20):
            self.fail(field, "Must be a national id of 6 to 20 digits (spaces and dashes allowed)")
        return digits

    def reason(self, field: str, value: str) -> str:
        """Why the user does something that is reviewed later: 10 to 500 characters."""
        value = value.strip()
        if len(value) < MIN_REASON:
            self.fail(field, f"Say why, in at least {MIN_REASON} characters")
        elif len(value) > MAX_REASON:
            self.fail(field, f"Must be at most {MAX_REASON} characters")
        elif any(unicodedata.category(c) == "Cc" for c in value):
            self.fail(field, "Must not contain control characters")
        return value

    def birth_date(self, field: str, value: dt.date | None, today: dt.date) -> None:
        if value is not None and value > today:
            self.fail(field, "Must not be in the future")

    def text(self, field: str, value: str | None, *, required: bool = False) -> str | None:
        if value is None:
            if required:
                self.fail(field, "Must not be empty")
            return None
        value = value.strip()
        if required and not value:
            self.fail(field, "Must not be empty")
        elif len(value) > MAX_TEXT:
            self.fail(field, f"Must be at most {MAX_TEXT} characters")
        return value or None

    def version(self, field: str, value: int | None) -> None:
        if value is not None and value < 1:
            self.fail(field, "Versions start at 1")

    def node_id(self, field: str, global_id: str, type_name: str) -> uuid.UUID | None:
        """A global id of ``type_name``; malformed or of another type is NOT_FOUND, like foreign."""
        try:
            return expect_global_id(global_id, type_name)
        except BadUserInput:
            self.problems.append(not_found(field, type_name.lower()))
            return None
