"""The cost step of a request (issue 9): caps before anything runs, a budget reserved, the
difference refunded once the answer is known, and where the caller stands in every response.

- **Caps** on the operation's shape and estimated cost (:mod:`hms.limits.cost`): depth,
  aliases, root fields, cost. Past one: 400 with ``MAX_DEPTH_EXCEEDED``,
  ``MAX_ALIASES_EXCEEDED``, ``MAX_ROOT_FIELDS_EXCEEDED`` or ``COST_ESTIMATED_TOO_EXPENSIVE``,
  ``extensions {cost, limit}`` and the most expensive paths, before any SQL.
- **Budgets** (:mod:`hms.limits.budget`): the estimate is reserved from the caller's bucket
  (by role) and the hospital's; over budget: 429 ``THROTTLED`` with ``Retry-After``, nothing
  run. After execution the estimate minus the actual cost is refunded.
- **Modes** per client application: ``enforce`` refuses, ``measure`` only reports and counts
  (to calibrate limits on real traffic). The token's ``azp`` claim picks the client's mode; a
  client-name header may only make it stricter.
- **Budget store down**: callers with a fail-open role (clinicians by default) are admitted,
  counted and logged; the others get ``THROTTLED`` with a short ``Retry-After`` — never a 5xx.
- **Dry run**: with ``HMS-Dry-Run: cost`` a request is costed, checked against the caps and
  answered with where the caller stands, without running or charging anything.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from graphql import DocumentNode, GraphQLSchema, OperationDefinitionNode
from graphql.execution.values import get_variable_values

from hms.cache import keys
from hms.context import Principal
from hms.limits.budget import Budgets, BudgetUnavailable, Rate
from hms.limits.cost import CostModel, FieldRule, Formula
from hms.settings import COST_MODES, Settings

log = logging.getLogger("hms.limits")

#: Seconds a fail-closed caller is asked to wait while the budget store is down.
UNAVAILABLE_RETRY = 2


class Refusal(Exception):
    """The request may not run; the pipeline answers it with these parts."""

    def __init__(
        self,
        message: str,
        code: str,
        status: int,
        *,
        extensions: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.extensions = dict(extensions or {})
        self.headers = dict(headers or {})


@dataclasses.dataclass
class Charge:
    """One request's cost: what was estimated and reserved, then what it really cost."""

    formula: Formula | None
    requested: int
    rate: Rate
    caller: str = ""
    hospital: str = ""
    rates: tuple[Rate, Rate] | None = None
    reserved: bool = False
    #: The caller's bucket level after the reservation (or now, for a dry run).
    available: float = 0.0
    actual: int | None = None
    #: The request's coerced variables (list sizes come from them).
    variables: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def finish(self, data: Mapping[str, Any] | None) -> dict[str, Any]:
        """Settle the actual cost of ``data`` (None: nothing ran) and describe the charge."""
        return self._settled(self.formula.actual(data) if self.formula else 0)

    def finish_text(self, data: bytes) -> dict[str, Any]:
        """The same for ``data`` as JSON text, counted without decoding it where it can be."""
        formula = self.formula
        if formula is None:
            return self._settled(0)
        if formula.countable:
            return self._settled(formula.actual_text(data, self.variables))
        return self._settled(formula.actual(orjson.loads(data)))

    def _settled(self, actual: int) -> dict[str, Any]:
        self.actual = actual
        if self.reserved:
            self.available = min(self.rate.capacity, self.available + self.refund)
        return self.extension()

    @property
    def refund(self) -> int:
        """What goes back to the buckets: the estimate is the most a request is charged."""
        return max(0, self.requested - (self.actual if self.actual is not None else self.requested))

    def extension(self) -> dict[str, Any]:
        """``extensions.cost``, in Shopify's shape."""
        return {
            "requestedQueryCost": self.requested,
            "actualQueryCost": self.actual,
            "throttleStatus": {
                "maximumAvailable": _number(self.rate.capacity),
                "currentlyAvailable": _number(self.available),
                "restoreRate": _number(self.rate.per_second),
            },
        }

    def headers(self) -> dict[str, str]:
        """``RateLimit-*`` headers (draft-ietf-httpapi-ratelimit-headers, in cost points)."""
        missing = max(0.0, self.rate.capacity - self.available)
        return {
            "RateLimit-Limit": str(int(self.rate.capacity)),
            "RateLimit-Remaining": str(int(self.available)),
            "RateLimit-Reset": str(math.ceil(missing / self.rate.per_second)),
        }


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(value, 3)


class CostGate:
    def __init__(
        self,
        schema: GraphQLSchema,
        rules: Mapping[tuple[str, str], FieldRule],
        settings: Settings,
        budgets: Budgets,
        *,
        count: Callable[[str, str], None] = lambda what, outcome: None,
    ) -> None:
        self.schema = schema
        self.settings = settings
        self.budgets = budgets
        self.model = CostModel(schema, rules, max_page_size=settings.max_page_size)
        #: (what, outcome) -> None: the metric of refusals and budget-store outages.
        self.count = count

    def mode(self, principal: Principal, client_name: str | None) -> str:
        settings = self.settings
        if principal.client is not None:
            return settings.cost_modes.get(principal.client, settings.cost_mode)
        named = settings.cost_modes.get(client_name or "", settings.cost_mode)
        return max(named, settings.cost_mode, key=COST_MODES.index)

    def rates(self, principal: Principal) -> tuple[Rate, Rate]:
        budgets = self.settings.cost_budgets
        mine = [budgets[role] for role in principal.roles if role in budgets]
        caller = max(mine) if mine else budgets["default"]
        return Rate(*caller), Rate(*self.settings.hospital_cost_budget)

    async def admit(
        self,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        variables: Mapping[str, Any] | None,
        principal: Principal,
        client_name: str | None,
        *,
        dry_run: bool = False,
    ) -> Charge:
        """The request's charge, reserved; :class:`Refusal` when it may not run."""
        rates = self.rates(principal)
        coerced = get_variable_values(
            self.schema, operation.variable_definitions or (), dict(variables or {})
        )
        if isinstance(coerced, list):  # execution reports it; nothing runs, nothing is charged
            return Charge(None, 0, rates[0])
        formula = self.model.formula(document, operation, coerced)
        requested = formula.cost(coerced.coerced)
        enforce = self.mode(principal, client_name) == "enforce"
        self.check_caps(formula, requested, coerced.coerced, enforce=enforce)
        charge = Charge(
            formula,
            requested,
            rates[0],
            caller=keys.caller_budget(
                str(principal.hospital_id), principal.subject, principal.client
            ),
            hospital=keys.hospital_budget(str(principal.hospital_id)),
            rates=rates,
            variables=coerced.coerced,
        )
        try:
            if dry_run:
                charge.available = await self.budgets.peek(charge.caller, rates)
                return charge
            outcome = await self.budgets.reserve(
                charge.caller, charge.hospital, requested, rates, force=not enforce
            )
        except BudgetUnavailable as error:
            return self.unavailable(charge, principal, error)
        charge.reserved = True
        charge.available = outcome.available
        if not outcome.admitted:
            self.count("THROTTLED", "refused" if enforce else "measured")
            if enforce:
                raise self.throttled(charge, outcome.wait)
        return charge

    def check_caps(
        self, formula: Formula, requested: int, variables: Mapping[str, Any], *, enforce: bool
    ) -> None:
        settings = self.settings
        caps = (
            (requested, settings.max_cost, "COST_ESTIMATED_TOO_EXPENSIVE", "cost"),
            (formula.depth, settings.max_depth, "MAX_DEPTH_EXCEEDED", "depth"),
            (formula.aliases, settings.max_aliases, "MAX_ALIASES_EXCEEDED", "aliases"),
            (formula.root_fields, settings.max_root_fields, "MAX_ROOT_FIELDS_EXCEEDED",
             "root fields"),
        )  # fmt: skip
        for value, limit, code, what in caps:
            if value <= limit:
                continue
            self.count(code, "refused" if enforce else "measured")
            if not enforce:
                log.info("over the %s limit (%d > %d), measured only", what, value, limit)
                continue
            raise Refusal(
                f"The operation's {what} is {value}, over the limit of {limit}"
                + ("; ask for fewer items or fewer fields" if what == "cost" else ""),
                code,
                400,
                extensions={
                    "cost": requested,
                    "limit": limit,
                    "value": value,
                    "paths": formula.hot_paths(variables),
                },
            )

    def throttled(self, charge: Charge, wait: float) -> Refusal:
        extension = charge.extension()
        if math.isinf(wait):
            return Refusal(
                f"The operation costs {charge.requested}, more than this caller's whole budget",
                "THROTTLED",
                429,
                extensions={"cost": extension},
            )
        seconds = max(1, math.ceil(wait))
        return Refusal(
            f"The operation costs {charge.requested} and {int(charge.available)} is available;"
            f" retry in {seconds} s",
            "THROTTLED",
            429,
            extensions={"cost": extension},
            headers={"Retry-After": str(seconds), **charge.headers()},
        )

    def unavailable(self, charge: Charge, principal: Principal, error: Exception) -> Charge:
        if principal.roles & self.settings.cost_fail_open_roles:
            self.count("BUDGET_UNAVAILABLE", "admitted")
            log.warning("cost budget store unavailable (%s): admitted", type(error).__name__)
            charge.available = charge.rate.capacity
            return charge
        self.count("BUDGET_UNAVAILABLE", "refused")
        log.warning("cost budget store unavailable (%s): refused", type(error).__name__)
        raise Refusal(
            "The request budget cannot be checked right now; retry shortly",
            "THROTTLED",
            429,
            extensions={"cost": charge.extension()},
            headers={"Retry-After": str(UNAVAILABLE_RETRY)},
        )

    async def settle(self, charge: Charge) -> None:
        """Give back what the request did not use (after :meth:`Charge.finish`)."""
        if not charge.reserved or charge.refund <= 0 or charge.rates is None:
            return
        try:
            await self.budgets.refund(charge.caller, charge.hospital, charge.refund, charge.rates)
        except BudgetUnavailable as error:  # the bucket refills on its own; say so
            self.count("BUDGET_UNAVAILABLE", "refund_lost")
            log.warning("cost budget store unavailable (%s): refund lost", type(error).__name__)
