"""The role policy (:mod:`hms.security.policy`) on the interpreted path, as field extensions.

:func:`phi` classes a field: it prints ``@phi(class: …)`` in the schema and guards the field,
so a caller whose roles may not read the class gets null and a ``FORBIDDEN`` error on that
path, never the value. :class:`WriteGuard` stands in front of every mutation field: a caller
whose roles may not run it gets the payload with a ``FORBIDDEN`` user error, and nothing runs.
(The compiled path never runs a document that selects a field the caller may not read; see
:mod:`hms.compiler`.)
"""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.extensions import FieldExtension
from strawberry.types.field import StrawberryField
from strawberry.utils.str_converters import to_camel_case

from hms.context import note_emergency
from hms.resolvers.emergency import confidential_refusal
from hms.resolvers.errors import Forbidden
from hms.resolvers.outcomes import Outcome, Problem
from hms.schema.directives import Phi
from hms.security import policy
from hms.security.policy import FieldClass


class ReadGuard(FieldExtension):
    def __init__(self, field_class: FieldClass) -> None:
        self.field_class = field_class
        self.confidential = field_class in policy.CONFIDENTIAL_CLASSES

    def _check(self, info: strawberry.Info) -> None:
        if self.field_class not in policy.readable(info.context.principal.roles):
            raise Forbidden(policy.read_refusal(self.field_class))

    def resolve(self, next_: Any, source: Any, info: strawberry.Info, **kwargs: Any) -> Any:
        self._check(info)
        if self.confidential and getattr(source, "confidential", False):
            return self._granted(next_(source, info, **kwargs), source, info)
        return next_(source, info, **kwargs)

    async def resolve_async(
        self, next_: Any, source: Any, info: strawberry.Info, **kwargs: Any
    ) -> Any:
        self._check(info)
        if self.confidential and getattr(source, "confidential", False):
            return await self._granted(await next_(source, info, **kwargs), source, info)
        return await next_(source, info, **kwargs)

    async def _granted(self, value: Any, source: Any, info: strawberry.Info) -> Any:
        """``value`` of a confidential record, if the caller holds an emergency grant for its
        patient (the read is then audited with purpose ETREAT)."""
        patient = getattr(source, "patient_pk", None) or source.pk
        if patient not in await info.context.emergency_grants():
            raise Forbidden(confidential_refusal())
        note_emergency()
        return value


def phi(field_class: FieldClass, **options: Any) -> Any:
    """A strawberry field of ``field_class``: the directive in the SDL and the guard."""
    return strawberry.field(
        directives=[Phi(class_=field_class)], extensions=[ReadGuard(field_class)], **options
    )


class WriteGuard(FieldExtension):
    """Refuses a mutation the caller's roles may not run, as a ``FORBIDDEN`` user error."""

    def apply(self, field: StrawberryField) -> None:
        self.name = field.graphql_name or to_camel_case(field.python_name)
        self.payload: Any = field.type

    async def resolve_async(
        self, next_: Any, source: Any, info: strawberry.Info, **kwargs: Any
    ) -> Any:
        if not policy.may_write(self.name, info.context.principal.roles):
            problem = Problem(None, policy.write_refusal(self.name), "FORBIDDEN")
            return self.payload.of(Outcome.failed(problem))
        return await next_(source, info, **kwargs)
