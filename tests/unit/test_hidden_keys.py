"""The compiled answer's hidden audit keys come out exactly, whatever the values hold."""

from __future__ import annotations

import json
import uuid
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from hms.compiler import take_patients
from hms.compiler.compile import AUDIT_KEY

# Values as PostgreSQL's row_to_json writes them: any text (control characters, quotes,
# backslashes, the hidden key's own character), numbers, booleans, null, nested objects.
values = st.recursive(
    st.one_of(st.text(), st.integers(), st.booleans(), st.none()),
    lambda inner: (
        st.lists(inner, max_size=3)
        # Keys of an answer's objects are GraphQL response keys, never the hidden key itself
        # (its character may be anywhere in a value).
        | st.dictionaries(
            st.text(min_size=1, max_size=5).filter(lambda key: key != AUDIT_KEY), inner, max_size=3
        )
    ),
    max_leaves=12,
)
objects = st.lists(
    st.tuples(
        st.booleans(),
        st.booleans(),
        st.uuids(),
        st.dictionaries(st.text(max_size=5), values, max_size=3),
    ),
    max_size=6,
)


Items = list[tuple[bool, bool, uuid.UUID, dict[str, Any]]]


def hidden(items: Items) -> tuple[str, str, set[uuid.UUID], bool]:
    """The answer with hidden first keys on the objects that name a patient (marked "!" when
    confidential), without them, the patients named, and whether one was marked."""
    with_keys, without = [], []
    named = set()
    marked = False
    for names, confidential, patient, fields in items:
        fields = {k: v for k, v in fields.items() if k != AUDIT_KEY}
        without.append(fields)
        if names:
            mark = "!" if confidential else ""
            with_keys.append({AUDIT_KEY: mark + str(patient), **fields})
            named.add(patient)
            marked = marked or confidential
        else:
            with_keys.append(fields)
    return dump({"data": with_keys}), dump({"data": without}), named, marked


def dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@given(objects)
def test_hidden_keys_come_out_and_name_their_patients(items: Any) -> None:
    raw, expected, named, marked = hidden(items)
    assert take_patients(raw) == (expected, named, marked)


def test_an_object_with_only_its_hidden_key_becomes_empty() -> None:
    pk = uuid.uuid4()
    assert take_patients(f'{{"a":{{"\\u0001":"{pk}"}}}}') == ('{"a":{}}', {pk}, False)


def test_a_value_that_looks_like_the_key_is_left_alone() -> None:
    answer = json.dumps({"name": '\x01":"' + str(uuid.uuid4())}, separators=(",", ":"))
    assert take_patients(answer) == (answer, set(), False)
