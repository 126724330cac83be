from __future__ import annotations

import datetime as dt
import uuid
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hms.persistence import patients
from hms.resolvers.errors import BadUserInput
from hms.resolvers.pagination import PageArgs, page_spec
from hms.resolvers.relay import (
    NODE_TYPES,
    CursorCodec,
    expect_global_id,
    from_global_id,
    to_global_id,
)
from hms.settings import Settings

KEY = patients.sort_key("name", descending=False)
SETTINGS = Settings()


@given(st.sampled_from(NODE_TYPES), st.uuids())
def test_global_ids_round_trip(type_name: str, pk: uuid.UUID) -> None:
    assert from_global_id(to_global_id(type_name, pk)) == (type_name, pk)


def test_global_ids_are_opaque() -> None:
    gid = to_global_id("Patient", uuid.UUID(int=1))
    assert "Patient" not in gid
    assert "-" not in gid


def test_wrong_kind_of_id_is_refused() -> None:
    with pytest.raises(BadUserInput, match="expected a Patient id"):
        expect_global_id(to_global_id("Encounter", uuid.uuid4()), "Patient")


@given(st.text(max_size=60))
def test_arbitrary_text_never_crashes_the_id_decoder(text: str) -> None:
    """Either a valid id of a known type or BadUserInput; never another exception."""
    try:
        type_name, _ = from_global_id(text)
    except BadUserInput:
        return
    assert type_name in NODE_TYPES


def _row(name: str = "Ng", given: str = "Ann", pk: uuid.UUID | None = None) -> SimpleNamespace:
    return SimpleNamespace(family_name=name, given_name=given, id=pk or uuid.uuid4())


def test_cursor_round_trips_the_sort_key() -> None:
    codec = CursorCodec(b"k" * 32, "patients:name:False", KEY)
    row = _row()
    assert codec.decode(codec.encode(row), "after") == ("Ng", "Ann", row.id)


def test_cursor_with_dates_round_trips() -> None:
    codec = CursorCodec(b"k" * 32, "c", patients.sort_key("created_at", descending=True))
    row = SimpleNamespace(created_at=dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC), id=uuid.uuid4())
    assert codec.decode(codec.encode(row), "after") == (row.created_at, row.id)


def test_cursor_signed_with_another_key_or_scope_is_refused() -> None:
    cursor = CursorCodec(b"k" * 32, "patients:name:False", KEY).encode(_row())
    for codec in (
        CursorCodec(b"x" * 32, "patients:name:False", KEY),
        CursorCodec(b"k" * 32, "patients:name:True", KEY),
    ):
        with pytest.raises(BadUserInput, match="Invalid cursor in 'after'"):
            codec.decode(cursor, "after")


@given(st.text(max_size=80))
def test_arbitrary_text_is_never_a_cursor(text: str) -> None:
    codec = CursorCodec(b"k" * 32, "s", KEY)
    with pytest.raises(BadUserInput):
        codec.decode(text, "before")


def test_page_spec_defaults_and_bounds() -> None:
    codec = CursorCodec(b"k" * 32, "s", KEY)
    assert page_spec(SETTINGS, PageArgs(), codec).limit == 20
    assert page_spec(SETTINGS, PageArgs(first=0), codec).limit == 0
    assert page_spec(SETTINGS, PageArgs(last=7), codec).backward
    for args in (PageArgs(first=101), PageArgs(first=-1), PageArgs(last=101)):
        with pytest.raises(BadUserInput, match="between 0 and 100"):
            page_spec(SETTINGS, args, codec)
    with pytest.raises(BadUserInput, match="not both"):
        page_spec(SETTINGS, PageArgs(first=1, last=1), codec)
