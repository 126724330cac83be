"""What a mutation resolver hands back: the written row or the user errors, never both.

Domain failures are data (``userErrors`` with stable codes, DESIGN §5), not GraphQL errors:
a client branches on ``code`` and points at ``field``. :func:`atomic` runs one write in a
savepoint and turns the persistence layer's failures into :class:`Problem` s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from hms.context import Context
from hms.persistence.errors import (
    IllegalState,
    MrnTaken,
    NotFound,
    SlotTaken,
    VersionConflict,
)

Code = Literal[
    "NOT_FOUND", "VALIDATION", "SLOT_TAKEN", "VERSION_CONFLICT", "FORBIDDEN", "UNAVAILABLE"
]


@dataclasses.dataclass(frozen=True)
class Problem:
    field: tuple[str, ...] | None
    message: str
    code: Code
    current_version: int | None = None


@dataclasses.dataclass(frozen=True)
class Outcome:
    row: Any | None = None
    problems: tuple[Problem, ...] = ()

    @classmethod
    def failed(cls, *problems: Problem) -> Outcome:
        return cls(None, problems)


def input_field(name: str) -> tuple[str, ...]:
    return ("input", name)


def not_found(name: str, what: str) -> Problem:
    # The same answer for a missing id, a malformed one and another hospital's: no existence leak.
    return Problem(input_field(name), f"No {what} with this id", "NOT_FOUND")


async def atomic(
    ctx: Context,
    write: Callable[[], Awaitable[Any]],
    *,
    id_fields: dict[str, str],
    illegal: Callable[[str], Problem] | None = None,
) -> Outcome:
    """Run ``write`` inside a savepoint: all of it or none of it, without ending the request.

    ``id_fields`` maps what may be missing (``"patient"``) to the input field naming it.
    Unexpected exceptions propagate: this field's savepoint is rolled back and it reports an
    internal error, while the document's other fields keep their (committed) results.
    """
    try:
        async with ctx.db.savepoint():
            row = await write()
    except NotFound as error:
        return Outcome.failed(not_found(id_fields[error.what], error.what))
    except VersionConflict as error:
        return Outcome.failed(
            Problem(
                input_field("expectedVersion"),
                f"The record was changed by someone else; its current version is {error.current}",
                "VERSION_CONFLICT",
                current_version=error.current,
            )
        )
    except SlotTaken:
        return Outcome.failed(
            Problem(
                input_field("startAt"),
                "The practitioner already has an appointment overlapping this time",
                "SLOT_TAKEN",
            )
        )
    except MrnTaken:
        return Outcome.failed(
            Problem(input_field("mrn"), "Another patient already has this MRN", "VALIDATION")
        )
    except IllegalState as error:
        if illegal is None:
            raise
        return Outcome.failed(illegal(error.status))
    return Outcome(row)
