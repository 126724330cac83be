from __future__ import annotations

import base64
import uuid
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


def _row(pk: uuid.UUID | None = None) -> SimpleNamespace:
    return SimpleNamespace(family_name="Ng", given_name="Ann", id=pk or uuid.uuid4())


def test_cursor_round_trips_the_row_id_and_nothing_else() -> None:
    codec = CursorCodec("patients:name:asc")
    row = _row()
    cursor = codec.encode(row)
    assert codec.decode(cursor, "after") == row.id
    decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    assert decoded == f"patients:name:asc:{row.id}"  # no names, no dates: no PHI
    assert "=" not in cursor


@pytest.mark.parametrize("scope", ["s", "ab", "abc", "abcd", "patients:name:asc", "practitioners"])
def test_cursors_of_every_length_mod_4_round_trip(scope: str) -> None:
    """Base64 padding is stripped and restored: every length class must survive."""
    row = _row(uuid.UUID(int=7))
    codec = CursorCodec(scope)
    assert codec.decode(codec.encode(row), "after") == row.id


@pytest.mark.parametrize("type_name", NODE_TYPES)
@pytest.mark.parametrize("pk", [uuid.UUID(int=0), uuid.UUID(int=2**128 - 1), uuid.UUID(int=42)])
def test_ids_of_every_length_mod_4_round_trip(type_name: str, pk: uuid.UUID) -> None:
    global_id = to_global_id(type_name, pk)
    assert "=" not in global_id
    assert from_global_id(global_id) == (type_name, pk)
    # The five type names give id lengths in three classes mod 4; all must decode.
    assert len({len(to_global_id(t, pk)) % 4 for t in NODE_TYPES}) >= 3


def test_a_well_formed_id_of_an_unknown_type_is_bad_input() -> None:
    made_up = base64.urlsafe_b64encode(f"Foo:{uuid.uuid4()}".encode()).decode().rstrip("=")
    with pytest.raises(BadUserInput, match="not a valid object id"):
        from_global_id(made_up)


def test_a_cursor_of_another_scope_of_the_same_length_is_refused() -> None:
    """The scope check itself, not a uuid that fails to parse after a longer prefix."""
    cursor = CursorCodec("aaa").encode(_row())
    with pytest.raises(BadUserInput, match="Invalid cursor in 'after'"):
        CursorCodec("bbb").decode(cursor, "after")


def test_a_long_bad_id_is_quoted_only_in_part() -> None:
    with pytest.raises(BadUserInput) as caught:
        from_global_id("x" * 500)
    assert caught.value.message == f"Invalid ID: {'x' * 64!r} is not a valid object id"


def test_cursor_of_another_scope_is_refused() -> None:
    cursor = CursorCodec("patients:name:asc").encode(_row())
    for codec in (CursorCodec("patients:name:desc"), CursorCodec("patients:name")):
        with pytest.raises(BadUserInput, match="Invalid cursor in 'after'"):
            codec.decode(cursor, "after")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "cGF0aWVudHM6bmFtZTphc2M6",  # the scope and no id
        # the right scope with a non-canonical id (no hyphens)
        base64.urlsafe_b64encode(b"s:" + uuid.UUID(int=1).hex.encode()).decode(),
        "!!!" + CursorCodec("s").encode(SimpleNamespace(id=uuid.UUID(int=1))),
    ],
)
def test_near_miss_cursors_are_refused(text: str) -> None:
    with pytest.raises(BadUserInput):
        CursorCodec("s").decode(text, "before")


@given(st.text(max_size=80))
def test_arbitrary_text_is_never_a_cursor(text: str) -> None:
    codec = CursorCodec("s")
    with pytest.raises(BadUserInput):
        codec.decode(text, "before")


def test_page_spec_defaults_and_bounds() -> None:
    codec = CursorCodec("s")
    assert page_spec(SETTINGS, PageArgs(), codec).limit == 20
    assert page_spec(SETTINGS, PageArgs(first=0), codec).limit == 0
    assert page_spec(SETTINGS, PageArgs(last=7), codec).backward
    for args in (PageArgs(first=101), PageArgs(first=-1), PageArgs(last=101)):
        with pytest.raises(BadUserInput, match="between 0 and 100"):
            page_spec(SETTINGS, args, codec)
    with pytest.raises(BadUserInput, match="not both"):
        page_spec(SETTINGS, PageArgs(first=1, last=1), codec)
