"""Running an operation on the interpreted path: graphql-core over the strawberry schema.

Everything here exists so that a request's objects die with the request, freed by reference
counting instead of waiting for the cyclic garbage collector. A server that left each nested
request's context, loader caches, rows and error tracebacks in reference cycles grew by
~0.5 MB per request with the collector off, and with it on spent a quarter of its CPU in
collections that froze the event loop. Three cycles came from graphql-core 3.3 itself:

- the executor keeps bound methods of itself in ``async_helpers``
  (``graphql/execution/executor.py``, ``Executor.__init__``): broken by the public
  ``async_work_finished`` hook once all of its work has settled;
- a field error's traceback holds the frames it passed through, which hold the executor and the
  error: :func:`release_tracebacks` drops them once the response is built;
- ``handle_field_error`` re-raises an error to null its parent from a frame that holds it, and a
  sibling error under a parent already nulled is dropped without ever reaching the result:
  :class:`_Executor` re-raises it without that traceback.

``tests/api/test_gc.py`` runs nested, failing and mutation requests with the collector off and
checks that nothing of theirs is left for it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Mapping
from typing import Any

from graphql import (
    AsyncWorkFinishedInfo,
    DocumentNode,
    ExecutionHooks,
    ExecutionResult,
    Executor,
    GraphQLError,
    GraphQLOutputType,
    GraphQLSchema,
    execute,
)
from graphql.execution import Middleware
from graphql.execution.collect_fields import FieldDetailsList
from graphql.pyutils import Path


def _release_executor(info: AsyncWorkFinishedInfo) -> None:
    # Resolvers reach the helpers through their own ``info``; nothing reads this attribute
    # after the hook, which graphql-core runs once every piece of work has settled.
    del info.executor.async_helpers


_HOOKS = ExecutionHooks(async_work_finished=_release_executor)


class _Executor(Executor[Any]):
    """graphql-core's plain executor (the schema has no ``@defer``/``@stream``), minus a
    reference cycle per error that reaches a non-null field.

    ``handle_field_error`` is internal to graphql-core; mypy checks that this override still
    matches it (graphql-core is pinned below 3.4).
    """

    def handle_field_error(
        self,
        raw_error: Exception,
        return_type: GraphQLOutputType,
        field_details_list: FieldDetailsList,
        path: Path,
    ) -> None:
        try:
            super().handle_field_error(raw_error, return_type, field_details_list, path)
        except GraphQLError as error:
            del raw_error  # it is ``error`` itself when the error comes from a child field
            raise error.with_traceback(None)  # noqa: B904  # the same error, not a new one


def run(
    schema: GraphQLSchema,
    document: DocumentNode,
    *,
    context: Any,
    variables: Mapping[str, Any] | None,
    operation_name: str | None,
    middleware: Middleware | None = None,
    hide_suggestions: bool = False,
) -> ExecutionResult | Awaitable[ExecutionResult]:
    return execute(
        schema,
        document,
        context_value=context,
        variable_values=dict(variables) if variables else None,
        operation_name=operation_name,
        middleware=middleware,
        hide_suggestions=hide_suggestions,
        executor_class=_Executor,
        hooks=_HOOKS,
    )


def release_tracebacks(errors: Iterable[BaseException | None]) -> None:
    """Drop the tracebacks of errors that have been formatted and logged already.

    Also for the errors they were raised from: a driver error's traceback can hold the very
    exception that translated it (SQLAlchemy's asyncpg adapter does).
    """
    pending = list(errors)
    seen: set[int] = set()
    while pending:
        error = pending.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        error.__traceback__ = None
        pending += (error.__cause__, error.__context__, getattr(error, "original_error", None))
