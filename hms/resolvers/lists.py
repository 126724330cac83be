"""A connection's arguments → what to read: the filtered query, the order, the page, the cursors.

Both execution paths start here: the interpreted path fetches the page with it, the compiler
writes it into its one statement. Arguments arrive as the resolvers receive them from strawberry
(Python names; ``filter`` and ``order_by`` are the schema's input objects, used through
``to_filter()`` and ``.field``/``.direction``), and every rule that can refuse them (page sizes,
cursors, string limits) runs here, before any SQL.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from hms.context import Context
from hms.loaders.base import CountByParentLoader, PageByParentLoader
from hms.persistence import appointments, encounters, patients, practitioners
from hms.persistence.pages import PageSpec, SortKey, count, fetch_page
from hms.persistence.queries import Filtered, Query
from hms.resolvers.fields import Children
from hms.resolvers.pagination import Page, PageArgs, anchored, direction, page_spec
from hms.resolvers.relay import CursorCodec
from hms.settings import Settings


@dataclasses.dataclass(frozen=True)
class ListRequest:
    query: Query
    key: SortKey
    page: PageSpec
    codec: CursorCodec


@dataclasses.dataclass(frozen=True)
class RootList:
    """A root connection: which rows, and how ``orderBy`` picks the key and cursor scope."""

    type_name: str
    filtered: Filtered
    order: Callable[[Any], tuple[SortKey, str]]


def _patient_order(order: Any) -> tuple[SortKey, str]:
    field = "name" if order is None else order.field.value
    descending = order is not None and order.direction.value == "desc"
    return patients.sort_key(field, descending=descending), (
        f"patients:{field}:{direction(descending)}"
    )


def _appointment_order(order: Any) -> tuple[SortKey, str]:
    descending = order is not None and order.direction.value == "desc"
    return appointments.sort_key(descending=descending), (
        f"appointments:start:{direction(descending)}"
    )


ROOT_LISTS: dict[str, RootList] = {
    "patients": RootList("Patient", patients.PATIENTS, _patient_order),
    "appointments": RootList("Appointment", appointments.APPOINTMENTS, _appointment_order),
    "encounters": RootList(
        "Encounter", encounters.ENCOUNTERS, lambda _order: (encounters.KEY, "encounters")
    ),
    "practitioners": RootList(
        "Practitioner",
        practitioners.PRACTITIONERS,
        lambda _order: (practitioners.KEY, "practitioners"),
    ),
}


def _filter(args: Mapping[str, Any]) -> Any:
    given = args.get("filter")
    return None if given is None else given.to_filter()


def root_request(
    settings: Settings, hospital_id: uuid.UUID, field: str, args: Mapping[str, Any]
) -> ListRequest:
    spec = ROOT_LISTS[field]
    key, scope = spec.order(args.get("order_by"))
    codec = CursorCodec(scope)
    page = page_spec(
        settings,
        PageArgs(
            first=args.get("first"),
            after=args.get("after"),
            last=args.get("last"),
            before=args.get("before"),
        ),
        codec,
    )
    return ListRequest(spec.filtered.query(hospital_id, _filter(args)), key, page, codec)


def children_request(
    settings: Settings, hospital_id: uuid.UUID, children: Children, args: Mapping[str, Any]
) -> ListRequest:
    """A nested connection's page spec (``first``/``after`` only) and filtered query."""
    codec = CursorCodec(children.scope)
    page = page_spec(settings, PageArgs(first=args.get("first"), after=args.get("after")), codec)
    return ListRequest(
        children.filtered.query(hospital_id, _filter(args)), children.key, page, codec
    )


async def root_list(ctx: Context, field: str, args: Mapping[str, Any]) -> Page:
    """A root connection's page, on the interpreted path."""
    request = root_request(ctx.settings, ctx.hospital_id, field, args)
    rows = await anchored(fetch_page(ctx.db, request.query, request.key, request.page))
    return Page.of(rows, request.codec, lambda: count(ctx.db, request.query))


async def children_of(
    ctx: Context,
    parent_id: uuid.UUID,
    children: Children,
    args: Mapping[str, Any],
    pages: PageByParentLoader[Any],
    counts: CountByParentLoader[Any],
) -> Page:
    """A nested connection's page through its loaders: one statement per level."""
    request = children_request(ctx.settings, ctx.hospital_id, children, args)
    f = _filter(args)
    rows = await anchored(pages.load((parent_id, f, request.page)))
    return Page.of(rows, request.codec, lambda: counts.load((parent_id, f)))
