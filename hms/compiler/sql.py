"""SQL text for the compiled read path: JSON objects and leaf formats written by PostgreSQL.

Every function returns an SQL expression as text. Objects are ``row_to_json`` of a one-row
subselect whose column aliases are the response keys, lists ``array_to_json(array_agg(…))``:
both print compact JSON in column order, as the interpreted path's orjson does (``json_agg`` and
``json_build_object`` would add spaces). Leaf formats reproduce exactly what Python prints:
:func:`instant` is ``datetime.isoformat()`` of a UTC datetime, :func:`opaque` the unpadded
base64url of global ids and cursors (:mod:`hms.resolvers.relay`), :func:`enum` the GraphQL
name of a FHIR code (:func:`hms.resolvers.fields.enum_name`).
"""

from __future__ import annotations

from collections.abc import Sequence

#: PostgreSQL truncates identifiers (so column aliases, so JSON keys) past this many bytes.
MAX_IDENTIFIER_BYTES = 63


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def text(value: str) -> str:
    """A string literal (for type names and cursor scopes: our own constants, never input)."""
    return "'" + value.replace("'", "''") + "'"


def instant(column: str) -> str:
    """``datetime.isoformat()`` of the UTC instant: microseconds only when not zero."""
    utc = f"({column} AT TIME ZONE 'UTC')"
    return (
        f"(to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS')"
        f" || CASE WHEN date_part('microseconds', {utc})::int % 1000000 <> 0"
        f" THEN to_char({utc}, '.US') ELSE '' END || '+00:00')"
    )


def opaque(prefix: str, column: str) -> str:
    """``base64url(prefix || uuid)`` without padding: a global id or a cursor."""
    return (
        f"rtrim(translate(encode(convert_to({text(prefix)} || {column}::text, 'UTF8'),"
        " 'base64'), E'+/\\n', '-_'), '=')"
    )


def enum(column: str) -> str:
    return f"upper(replace({column}, '-', '_'))"


def obj(pairs: Sequence[tuple[str, str]]) -> str:
    """A JSON object of (response key, SQL expression) pairs, in order."""
    if not pairs:
        return "'{}'::json"
    columns = ", ".join(f"{expression} AS {ident(key)}" for key, expression in pairs)
    return f"(SELECT row_to_json(o) FROM (SELECT {columns}) o)"
