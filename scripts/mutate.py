#!/usr/bin/env python3
"""Mutation testing for one module: which small bugs would the tests let through?

    python scripts/mutate.py hms/persistence/pages.py [--tests T ...] [--timeout 120] [--list]
        [--only N ...] [--json PATH] [-- PYTEST-OPTIONS ...]
    make mutate MODULE=hms/persistence/pages.py [TESTS="tests/unit tests/api/test_reads.py"]

Coverage says a line ran; it does not say a test would notice if the line were wrong. This
script makes one small change at a time (a *mutant*) to the module, runs the tests that should
catch it, and reports every mutant the tests did not catch (a *survivor*). A survivor is either
a missing assertion or an equivalent mutant (a change that cannot alter behaviour); telling the
two apart is a human's job, so the summary prints the original and the mutated line of each.

It is a habit tool for the modules a change touches, not a CI gate: every mutant is a full
pytest run. It needs nothing beyond the project's own dev dependencies.

Operators (one mutant per change):

- Compare: ``<`` -> ``<=``/``>``, ``>`` -> ``>=``/``<`` (and the same for ``<=``/``>=``),
  ``==`` <-> ``!=``, ``is`` <-> ``is not``, ``in`` <-> ``not in``
- BoolOp: ``and`` <-> ``or``
- Number: every int constant +1 and -1
- Negate: the condition of an ``if``, ``while`` or ternary becomes ``not (...)``
- Delete: a simple statement inside a function becomes ``pass``
- Bool: ``True`` <-> ``False``

String constants are never mutated (nearly every such mutant is equivalent or only changes a
message). Nothing is mutated in type annotations, under ``if TYPE_CHECKING:``, in an
``if __name__ == "__main__":`` block, or where a ``# pragma: no mutate`` comment sits on the line
a mutation would start on; on the first line of a ``def``/``class``/``if``/``for``/``with``/``try``
that comment exempts the whole block.

Each mutant is made on a freshly parsed tree and written back with ``ast.unparse``, which
reformats the whole file; that is harmless because the tests judge behaviour, and the baseline
run is made on the unparsed, unmutated module to prove it. Line numbers in reports come from the
original source.

Running: the baseline and then each mutant is one ``pytest -x -q -p no:cacheprovider`` run of
the chosen tests, one after the other (the tests share this machine's PostgreSQL, and there are
two cores). Without ``--tests`` the table ``TESTS_FOR`` below picks them, else all of tests/
except tests/interop. A run that fails kills the mutant, including a module that no longer
imports; a run over ``--timeout`` is stopped and counts as killed too (a mutant that makes the
code loop is caught, just slowly). Hypothesis gets a fixed seed so a mutant's verdict does not
change from one run to the next.

Safety: the module must be committed (no staged or unstaged changes), so ``git checkout`` can
always recover it; the original bytes (and mtime) are written back after every mutant, also on
Ctrl-C, SIGTERM or SIGHUP, and checked to be byte-identical before the next one.

Exit status: 0 when the run completed (survivors are information, not failure), 2 on bad usage,
uncommitted changes or a red baseline, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import importlib.util
import io
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import tokenize
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# Default tests per module, fastest first (pytest runs them in this order and -x stops at the
# first failure, so a cheap unit test kills most mutants before the slow property tests start).
# Derived from which test files call into each module during a full run (a profiling hook)
# and then pruned to the files that assert on what the module does. Modules not listed run
# all of tests/ except tests/interop, which needs node and is slow. tests/unit/test_mutate.py
# checks that every path here exists.
TESTS_FOR: dict[str, tuple[str, ...]] = {
    "hms/persistence/pages.py": (
        "tests/unit/test_relay.py",
        "tests/api/test_cursors.py",
        "tests/api/test_reads.py",
        "tests/api/test_smoke.py",
        "tests/api/test_batching.py",
        "tests/integration/test_migrations.py",
        "tests/property/test_pagination.py",
    ),
    "hms/persistence/queries.py": (
        "tests/api/test_reads.py",
        "tests/api/test_cursors.py",
        "tests/api/test_batching.py",
        "tests/api/test_gc.py",
        "tests/property/test_pagination.py",
    ),
    "hms/persistence/database.py": (
        "tests/integration/test_request_db.py",
        "tests/api/test_request_cleanup.py",
        "tests/api/test_deadlines.py",
        "tests/integration/test_tenancy.py",
        "tests/integration/test_savepoint.py",
        "tests/integration/test_concurrency.py",
        "tests/integration/test_outages.py",
    ),
    "hms/pipeline.py": (
        "tests/api/test_http.py",
        "tests/api/test_http_edges.py",
        "tests/api/test_input_bounds.py",
        "tests/api/test_identity.py",
        "tests/api/test_mutation_rollback.py",
        "tests/api/test_deadlines.py",
        "tests/api/test_idempotency.py",
        "tests/api/test_logs_phi.py",
        "tests/api/test_request_cleanup.py",
        "tests/api/test_gc.py",
        "tests/integration/test_outages.py",
        "tests/property/test_mutation_truth.py",
    ),
    "hms/limits/inputs.py": ("tests/api/test_input_bounds.py", "tests/api/test_logs_phi.py"),
    "hms/security/policy.py": ("tests/api/test_roles.py", "tests/api/test_audit.py"),
    "hms/security/oidc.py": ("tests/integration/test_oidc.py",),
    "hms/persistence/audit.py": ("tests/api/test_audit.py",),
    "hms/schema/scalars.py": (
        "tests/api/test_input_bounds.py",
        "tests/api/test_appointment_mutations.py",
        "tests/api/test_mutations.py",
    ),
    "hms/schema/execution.py": ("tests/api/test_gc.py", "tests/api/test_http.py"),
    "hms/security/identity.py": (
        "tests/api/test_identity.py",
        "tests/api/test_http.py",
        "tests/integration/test_oidc.py",
    ),
    "hms/loaders/base.py": (
        "tests/integration/test_request_db.py",
        "tests/api/test_request_cleanup.py",
        "tests/api/test_batching.py",
        "tests/api/test_reads.py",
    ),
    "hms/persistence/filters.py": (
        "tests/api/test_reads.py",
        "tests/property/test_pagination.py",
    ),
    "hms/resolvers/pagination.py": (
        "tests/unit/test_relay.py",
        "tests/api/test_http.py",
        "tests/api/test_reads.py",
        "tests/api/test_batching.py",
        "tests/property/test_pagination.py",
    ),
    "hms/resolvers/relay.py": (
        "tests/unit/test_relay.py",
        "tests/api/test_cursors.py",
        "tests/api/test_http.py",
        "tests/api/test_reads.py",
        "tests/property/test_pagination.py",
    ),
    "hms/security/tokens.py": (
        "tests/unit/test_token_edges.py",
        "tests/unit/test_settings_tokens.py",
        "tests/api/test_http.py",
        "tests/api/test_reads.py",
        "tests/api/test_idempotency.py",
    ),
    "hms/settings.py": (
        "tests/unit/test_settings_tokens.py",
        "tests/api/test_http.py",
        "tests/api/test_graphiql.py",
        "tests/integration/test_replicas.py",
    ),
    "hms/models/workflow.py": (
        "tests/unit/test_workflow.py",
        "tests/api/test_appointment_mutations.py",
        "tests/property/test_mutation_state_machine.py",
    ),
    "hms/cache/backend.py": (
        "tests/integration/test_cache.py",
        "tests/api/test_http.py",
    ),
    "hms/http/health.py": ("tests/api/test_http.py", "tests/integration/test_outages.py"),
    "hms/http/graphql.py": (
        "tests/api/test_http.py",
        "tests/api/test_http_edges.py",
        "tests/interop/test_disconnect.py",
    ),
    "hms/persistence/idempotency.py": ("tests/api/test_idempotency.py",),
    "hms/persistence/patient_writes.py": (
        "tests/api/test_mutations.py",
        "tests/integration/test_savepoint.py",
        "tests/property/test_mutation_state_machine.py",
    ),
    "hms/persistence/appointment_writes.py": (
        "tests/api/test_appointment_mutations.py",
        "tests/api/test_idempotency.py",
        "tests/property/test_mutation_state_machine.py",
    ),
    "hms/persistence/encounter_writes.py": (
        "tests/api/test_mutations.py",
        "tests/property/test_mutation_state_machine.py",
    ),
    "hms/persistence/seed.py": ("tests/integration/test_seed.py",),
    "hms/persistence/synthetic.py": ("tests/integration/test_seed.py",),
    "hms/persistence/embedded.py": ("tests/integration/test_embedded.py",),
}
FALLBACK_TESTS = ("tests", "--ignore=tests/interop")

# -x: the first failure kills the mutant, nothing more to learn. No cache provider: the runs
# must not leave --lf state behind that changes what the developer's next pytest run does.
PYTEST_ARGS = ("-x", "-q", "-p", "no:cacheprovider")

PRAGMA = re.compile(r"#.*\bpragma:\s*no\s+mutate\b", re.IGNORECASE)

_SYMBOLS: dict[type[ast.cmpop], str] = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.In: "in",
    ast.NotIn: "not in",
}
_FLIPS: dict[type[ast.cmpop], tuple[type[ast.cmpop], ...]] = {
    ast.Lt: (ast.LtE, ast.Gt),
    ast.LtE: (ast.Lt, ast.GtE),
    ast.Gt: (ast.GtE, ast.Lt),
    ast.GtE: (ast.Gt, ast.LtE),
    ast.Eq: (ast.NotEq,),
    ast.NotEq: (ast.Eq,),
    ast.Is: (ast.IsNot,),
    ast.IsNot: (ast.Is,),
    ast.In: (ast.NotIn,),
    ast.NotIn: (ast.In,),
}
# How each operator is spelled, to find it for reports in the gap between its two operands
# (which holds only that operator, brackets, blanks and comments).
_PATTERNS: dict[type[ast.cmpop], str] = {
    ast.Lt: r"<",
    ast.LtE: r"<=",
    ast.Gt: r">",
    ast.GtE: r">=",
    ast.Eq: r"==",
    ast.NotEq: r"!=",
    ast.Is: r"\bis\b",
    ast.IsNot: r"\bis\s+not\b",
    ast.In: r"\bin\b",
    ast.NotIn: r"\bnot\s+in\b",
}
_BLOCKS = (
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.If,
    ast.For,
    ast.AsyncFor,
    ast.While,
    ast.With,
    ast.AsyncWith,
    ast.Try,
    ast.TryStar,
    ast.Match,
)
# Declarations rather than actions: replacing them with ``pass`` is noise, not a test gap.
_NOT_DELETED = (ast.Pass, ast.Global, ast.Nonlocal)


@dataclasses.dataclass(frozen=True)
class Mutant:
    number: int  # 1-based, in source order
    lineno: int  # in the original source
    operator: str
    change: str
    original: str  # the original line(s), joined into one line
    mutated: str  # the same with the change spliced into the original text

    def label(self, path: str) -> str:
        return f"{path}:{self.lineno}  {self.operator}: {self.change}"


_Pos = tuple[int, int]  # (line, UTF-8 byte column), as ast records positions
_Edit = tuple[_Pos, _Pos, str]  # replace the source between two positions with a text


@dataclasses.dataclass(frozen=True)
class _Point:
    """One possible change in one parsed tree."""

    anchor: ast.expr | ast.stmt  # the innermost node around the change; reports show its lines
    operator: str
    change: str
    apply: Callable[[], None]  # makes the change in the tree
    edits: tuple[_Edit, ...]  # the same change as text edits of the original source


def quiet_lines(source: str) -> frozenset[int]:
    """Lines with a ``# pragma: no mutate`` comment (real comments only, not strings)."""
    lines = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT and PRAGMA.search(tok.string):
            lines.add(tok.start[0])
    return frozenset(lines)


def _start(node: ast.expr | ast.stmt) -> _Pos:
    return node.lineno, node.col_offset


def _end(node: ast.expr | ast.stmt) -> _Pos:
    if node.end_lineno is None or node.end_col_offset is None:  # only hand-built nodes
        raise ValueError(f"{ast.dump(node)} has no end position")
    return node.end_lineno, node.end_col_offset


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _is_main_guard(test: ast.expr) -> bool:
    # Flipping this comparison would run the CLI on import; that says nothing about the tests.
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and len(test.ops) == 1
        and isinstance(test.ops[0], ast.Eq | ast.NotEq)
    )


def _is_annotation(node: ast.AST, field: str) -> bool:
    return (
        (isinstance(node, ast.arg) and field == "annotation")
        or (isinstance(node, ast.AnnAssign) and field == "annotation")
        or (isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and field == "returns")
    )


def _number(value: int) -> ast.expr:
    # A negative literal is a unary minus in Python's grammar; building it that way lets
    # ast.unparse parenthesise it where precedence needs it, e.g. ``(-1) ** 2``.
    if value < 0:
        return ast.UnaryOp(op=ast.USub(), operand=ast.Constant(value=-value))
    return ast.Constant(value=value)


# Each closure is made by a function of its own so it captures its own node and index, not
# the variables of the loop that creates it.
def _put(parent: ast.AST, field: str, index: int | None, new: ast.AST) -> Callable[[], None]:
    def apply() -> None:
        if index is None:
            setattr(parent, field, new)
        else:
            getattr(parent, field)[index] = new

    return apply


def _flip(node: ast.Compare, index: int, new: type[ast.cmpop]) -> Callable[[], None]:
    def apply() -> None:
        node.ops[index] = new()

    return apply


def _swap_boolop(node: ast.BoolOp) -> Callable[[], None]:
    def apply() -> None:
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()

    return apply


def _not_bool(node: ast.Constant) -> Callable[[], None]:
    def apply() -> None:
        node.value = not node.value

    return apply


class _Finder:
    """Walks a tree in a fixed order and collects every change the operators allow."""

    def __init__(self, lines: list[str], quiet: frozenset[int]) -> None:
        self.lines = lines
        self.quiet = quiet
        self.points: list[_Point] = []

    def text(self, start: _Pos, end: _Pos) -> str:
        """The original source between two positions."""
        (l1, c1), (l2, c2) = start, end
        chunk = [line.encode() for line in self.lines[l1 - 1 : l2]]
        chunk[-1] = chunk[-1][:c2]
        chunk[0] = chunk[0][c1:]
        return b"\n".join(chunk).decode()

    def add(
        self,
        anchor: ast.expr | ast.stmt,
        operator: str,
        change: str,
        apply: Callable[[], None],
        *edits: _Edit,
    ) -> None:
        if anchor.lineno not in self.quiet:
            self.points.append(_Point(anchor, operator, change, apply, edits))

    def _keyword(self, start: _Pos, end: _Pos, pattern: str, new: str) -> _Edit:
        # Between two operands there is only the operator, brackets, blanks and comments.
        gap = self.text(start, end)
        return start, end, re.sub(pattern, new, gap, count=1)

    def visit(self, node: ast.AST, in_function: bool) -> None:
        if isinstance(node, _BLOCKS) and node.lineno in self.quiet:
            return
        if isinstance(node, ast.If) and _is_main_guard(node.test):
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            # Only the else branch runs at run time.
            for stmt in node.orelse:
                self.visit(stmt, in_function)
            return
        self._in_place(node)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            in_function = True
        elif isinstance(node, ast.ClassDef):
            in_function = False
        for field, value in ast.iter_fields(node):
            if _is_annotation(node, field):
                continue
            if isinstance(value, list):
                for index, item in enumerate(value):
                    if isinstance(item, ast.AST):
                        self._replacing(node, field, index, item, in_function)
                        self.visit(item, in_function)
            elif isinstance(value, ast.AST):
                self._replacing(node, field, None, value, in_function)
                self.visit(value, in_function)

    def _in_place(self, node: ast.AST) -> None:
        """Changes that edit ``node`` itself."""
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for i, op in enumerate(node.ops):
                gap = _end(operands[i]), _start(operands[i + 1])
                for new in _FLIPS[type(op)]:
                    old_symbol, new_symbol = _SYMBOLS[type(op)], _SYMBOLS[new]
                    pattern = _PATTERNS[type(op)]
                    edit = self._keyword(*gap, pattern, new_symbol)
                    change = f"{old_symbol} -> {new_symbol}"
                    self.add(node, "Compare", change, _flip(node, i, new), edit)
        elif isinstance(node, ast.BoolOp):
            was, now = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
            edits = [
                self._keyword(_end(a), _start(b), rf"\b{was}\b", now)
                for a, b in itertools.pairwise(node.values)
            ]
            self.add(node, "BoolOp", f"{was} -> {now}", _swap_boolop(node), *edits)
        elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
            flipped = str(not node.value)
            edit = _start(node), _end(node), flipped
            self.add(node, "Bool", f"{node.value} -> {flipped}", _not_bool(node), edit)

    def _replacing(
        self, parent: ast.AST, field: str, index: int | None, child: ast.AST, in_function: bool
    ) -> None:
        """Changes that put a new node in ``child``'s place."""
        if isinstance(child, ast.Constant) and type(child.value) is int:
            for delta in (1, -1):
                new = child.value + delta
                apply = _put(parent, field, index, _number(new))
                edit = _start(child), _end(child), str(new)
                self.add(child, "Number", f"{child.value} -> {new}", apply, edit)
        if (
            field == "test"
            and isinstance(parent, ast.If | ast.While | ast.IfExp)
            and isinstance(child, ast.expr)
        ):
            kind = {ast.If: "if", ast.While: "while", ast.IfExp: "ternary"}[type(parent)]
            apply = _put(parent, field, index, ast.UnaryOp(op=ast.Not(), operand=child))
            edit = _start(child), _end(child), f"not ({self.text(_start(child), _end(child))})"
            self.add(child, "Negate", f"{kind} condition -> not (...)", apply, edit)
        if (
            in_function
            and index is not None
            and isinstance(child, ast.stmt)
            and not isinstance(child, _BLOCKS + _NOT_DELETED)
            # Docstrings and other bare constants (``...``) do nothing to delete.
            and not (isinstance(child, ast.Expr) and isinstance(child.value, ast.Constant))
            and not (isinstance(child, ast.AnnAssign) and child.value is None)
        ):
            apply = _put(parent, field, index, ast.Pass())
            edit = _start(child), _end(child), "pass"
            self.add(child, "Delete", f"{type(child).__name__} -> pass", apply, edit)


def _lines(source: str) -> list[str]:
    # The line breaks ast counts (str.splitlines would also split on \f, \x1c, ...).
    return re.split(r"\r\n|\r|\n", source)


def _points(source: str, tree: ast.Module) -> list[_Point]:
    finder = _Finder(_lines(source), quiet_lines(source))
    finder.visit(tree, in_function=False)
    # Source order for humans; the sort is stable, so every fresh tree numbers alike.
    return sorted(finder.points, key=lambda p: _start(p.anchor))


def _shown(lines: list[str], point: _Point) -> tuple[str, str]:
    """The anchor's whole lines before and after the change, each joined into one line."""
    first, last = point.anchor.lineno, _end(point.anchor)[0]
    before = "\n".join(lines[first - 1 : last]).encode()

    def offset(pos: _Pos) -> int:
        line, col = pos
        return sum(len(lines[i].encode()) + 1 for i in range(first - 1, line - 1)) + col

    after = before
    for start, end, text in sorted(point.edits, reverse=True):  # right to left
        after = after[: offset(start)] + text.encode() + after[offset(end) :]

    def flat(text: bytes) -> str:
        return " ".join(part.strip() for part in text.decode().split("\n") if part.strip())

    return flat(before), flat(after)


def mutants(source: str) -> list[Mutant]:
    """Every mutant of ``source``, numbered in source order."""
    lines = _lines(source)
    found = []
    for number, point in enumerate(_points(source, ast.parse(source)), start=1):
        before, after = _shown(lines, point)
        found.append(
            Mutant(number, point.anchor.lineno, point.operator, point.change, before, after)
        )
    return found


def mutated_source(source: str, number: int) -> str:
    """The whole module with mutant ``number`` (1-based) applied, as ast.unparse writes it."""
    tree = ast.parse(source)  # a fresh tree: the previous mutant's change must not linger
    _points(source, tree)[number - 1].apply()
    return ast.unparse(tree) + "\n"


def unmutated_source(source: str) -> str:
    """The module through the same parse/unparse round trip as every mutant, unchanged."""
    return ast.unparse(ast.parse(source)) + "\n"


def default_tests(module: str) -> tuple[str, ...]:
    return TESTS_FOR.get(module, FALLBACK_TESTS)


# --- running ---------------------------------------------------------------------------------


def _git(cwd: Path, *args: str) -> int:
    return subprocess.run(  # noqa: S603 - fixed git arguments, no shell
        ["git", *args],  # noqa: S607 - whichever git the developer has on PATH
        cwd=cwd,
        capture_output=True,
        check=False,
    ).returncode


def uncommitted(path: Path) -> str | None:
    """Why ``path`` may not be overwritten, or None when it is exactly as committed.

    Compared with HEAD, not the index: a staged but uncommitted edit is work too.
    """
    if _git(path.parent, "ls-files", "--error-unmatch", "--", path.name) != 0:
        return "is not tracked by git"
    if _git(path.parent, "diff", "--quiet", "HEAD", "--", path.name) != 0:
        return "has uncommitted changes"
    return None


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    # Write beside the file and rename over it, so a kill at any moment leaves either the old
    # or the new content, never half of one.
    tmp = path.with_name(f".{path.name}.mutate-tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold Ctrl-C and friends until the block is done (they are delivered afterwards)."""
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, held)


_Handler = Callable[[int, FrameType | None], Any] | int | None


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


class Swap:
    """Writes mutants over a file and always puts the original bytes and mtime back.

    As a context manager it also turns SIGTERM and SIGHUP into KeyboardInterrupt, so a killed
    run unwinds through the same ``finally`` blocks as Ctrl-C.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.original = path.read_bytes()
        self.stat = path.stat()
        self._handlers: dict[signal.Signals, _Handler] = {}

    def write(self, text: str) -> None:
        _atomic_write(self.path, text.encode(), self.stat.st_mode)

    def restore(self) -> None:
        with _signals_held():
            _atomic_write(self.path, self.original, self.stat.st_mode)
            # The old mtime keeps make, git's index and any existing bytecode in step.
            os.utime(self.path, ns=(self.stat.st_atime_ns, self.stat.st_mtime_ns))
        if self.path.read_bytes() != self.original:
            raise RuntimeError(f"{self.path} differs from the original after restoring it")

    def __enter__(self) -> Swap:
        for signum in (signal.SIGTERM, signal.SIGHUP):
            self._handlers[signum] = signal.signal(signum, _interrupt)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.restore()
        finally:
            for signum, handler in self._handlers.items():
                if handler is not None:  # None: set outside Python, cannot be put back
                    signal.signal(signum, handler)


@dataclasses.dataclass(frozen=True)
class Outcome:
    status: str  # "passed", "failed" or "timeout"
    seconds: float
    output: str


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End a pytest run and its children; SIGINT first so session fixtures drop their DBs."""
    for signum, grace in ((signal.SIGINT, 15.0), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signum)
        try:
            proc.communicate(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def run_tests(tests: Sequence[str], timeout: float) -> Outcome:
    """Run pytest on ``tests`` in a fresh interpreter, as the project's own config says."""
    extra = []
    if importlib.util.find_spec("hypothesis") is not None:
        # One fixed seed: the same mutant gets the same verdict on every run.
        extra.append("--hypothesis-seed=0")
    with tempfile.TemporaryDirectory(prefix="mutate-hypothesis-") as examples:
        env = {
            **os.environ,
            # Mutants differ from each other only in content, and can share size and mtime
            # second; a cached .pyc of one could then be loaded for the next.
            "PYTHONDONTWRITEBYTECODE": "1",
            # Hypothesis replays stored failures; keep those of mutants out of .hypothesis/.
            "HYPOTHESIS_STORAGE_DIRECTORY": examples,
        }
        command = [sys.executable, "-m", "pytest", *PYTEST_ARGS, *extra, *tests]
        start = time.monotonic()
        # Own process group, so a timeout can end pytest's children (servers, node) too.
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and pytest, no shell
            command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop(proc)
            return Outcome("timeout", time.monotonic() - start, "")
        except BaseException:
            _stop(proc)
            raise
        status = "passed" if proc.returncode == 0 else "failed"
        return Outcome(status, time.monotonic() - start, out.decode(errors="replace"))


@dataclasses.dataclass(frozen=True)
class Result:
    mutant: Mutant
    status: str  # "killed", "survived" or "timeout"
    seconds: float
    by: str  # what killed it: the first failing test, or pytest's last line


def _culprit(output: str) -> str:
    """The first test pytest's summary names as failed (``-ra`` lists them), else its last line.

    Knowing which test killed a mutant shows where a behaviour is pinned down, and makes a
    kill by an unrelated (flaky) test stand out.
    """
    lines = output.strip().splitlines()
    # Only the summary: captured log sections above it have "ERROR    logger:..." lines too.
    summary = [i for i, line in enumerate(lines) if "short test summary info" in line]
    for line in lines[summary[0] + 1 :] if summary else ():
        if line.startswith(("FAILED ", "ERROR ")):
            return line.split(" - ")[0].removeprefix("FAILED ")
    return lines[-1] if lines else ""


VERDICT = {"failed": "killed", "passed": "survived", "timeout": "timeout"}


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{seconds % 60:04.1f}s" if seconds >= 60 else f"{seconds:.1f}s"


def summary(path: str, results: Sequence[Result], total: int, seconds: float) -> str:
    counts = {s: sum(r.status == s for r in results) for s in ("killed", "survived", "timeout")}
    done = len(results)
    score = (counts["killed"] + counts["timeout"]) / done if done else 0.0
    out = [
        "",
        f"{path}: {done} of {total} mutants run in {_minutes(seconds)}: "
        f"{counts['killed']} killed, {counts['survived']} survived, "
        f"{counts['timeout']} timeout; score {score:.1%} ((killed + timeout) / run)",
    ]
    survivors = [r.mutant for r in results if r.status == "survived"]
    if survivors:
        out.append("survivors (each is a missing assertion or an equivalent mutant):")
        for m in survivors:
            out += [f"  {m.label(path)}", f"    - {m.original}", f"    + {m.mutated}"]
    return "\n".join(out)


def _report(path: Path, data: dict[str, object]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="mutate.py", description=__doc__.split("\n")[0] if __doc__ else None
    )
    parser.add_argument("module", help="the .py file to mutate, e.g. hms/persistence/pages.py")
    parser.add_argument(
        "--tests",
        nargs="+",
        metavar="PATH",
        help="test files or directories, relative to the repository root (default: the table "
        "in this script, else tests/ without tests/interop)",
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds per mutant (default 120)"
    )
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument(
        "--only",
        nargs="+",
        type=int,
        metavar="N",
        help="run only these mutants (numbers as --list shows them), e.g. to re-check "
        "survivors against more tests",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # After "--" come pytest's own options (``-- --ignore=tests/interop -k cursor``), which
    # argparse would otherwise take for unknown options of this script.
    pytest_options: list[str] = []
    if "--" in argv:
        pytest_options = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    args = _parse_args(argv)
    module = Path(args.module).resolve()
    if module.suffix != ".py" or not module.is_file() or not module.is_relative_to(ROOT):
        print(f"mutate: {args.module} is not a .py file in {ROOT}", file=sys.stderr)
        return 2
    name = module.relative_to(ROOT).as_posix()
    source = module.read_text(encoding="utf-8")
    try:
        found = mutants(source)
    except SyntaxError as error:
        print(f"mutate: cannot parse {name}: {error}", file=sys.stderr)
        return 2
    tests = (*(args.tests or default_tests(name)), *pytest_options)
    everything = len(found)
    if args.only:
        unknown = sorted(set(args.only) - {m.number for m in found})
        if unknown:
            print(f"mutate: {name} has no mutant {unknown[0]}", file=sys.stderr)
            return 2
        found = [m for m in found if m.number in set(args.only)]

    if args.list:
        for m in found:
            print(f"[{m.number}] {m.label(name)}\n    - {m.original}\n    + {m.mutated}")
        print(f"{len(found)} mutants; tests: {' '.join(tests)}")
        return 0
    if importlib.util.find_spec("pytest") is None:
        print("mutate: pytest is not importable; run with the project's venv", file=sys.stderr)
        return 2
    missing = [t for t in args.tests or () if not (ROOT / t.split("::")[0]).exists()]
    if missing:
        print(f"mutate: no such test path: {' '.join(missing)}", file=sys.stderr)
        return 2
    if args.timeout <= 0:
        print("mutate: --timeout must be positive", file=sys.stderr)
        return 2
    if args.json and not args.json.resolve().parent.is_dir():  # found out now, not after an hour
        print(f"mutate: no directory for --json {args.json}", file=sys.stderr)
        return 2
    why = uncommitted(module)
    if why:
        print(f"mutate: {name} {why}; commit or stash it first", file=sys.stderr)
        return 2

    print(f"mutate: {name}, {len(found)} mutants; tests: {' '.join(tests)}", flush=True)
    print(f"(if this run is killed hard: git checkout -- {name})", flush=True)
    results: list[Result] = []
    started = time.monotonic()
    baseline: Outcome | None = None
    try:
        with Swap(module) as swap:
            # Baseline on the unparsed but unmutated module: proves both that the tests are
            # green and that ast.unparse's reformatting alone changes nothing they check.
            try:
                swap.write(unmutated_source(source))
                baseline = run_tests(tests, args.timeout)
            finally:
                swap.restore()
            if baseline.status != "passed":
                print(baseline.output[-4000:], file=sys.stderr)
                again = run_tests(tests, args.timeout)
                where = (
                    "already fail on the module as committed"
                    if again.status != "passed"
                    else "pass on the module as committed (flaky, or broken by ast.unparse)"
                )
                print(
                    f"mutate: red baseline ({baseline.status}): the tests {where}; "
                    "every mutant would look killed, so nothing was run",
                    file=sys.stderr,
                )
                return 2
            print(
                f"baseline: passed in {baseline.seconds:.1f}s; timeout {args.timeout:g}s/mutant",
                flush=True,
            )
            width = len(str(everything))
            for m in found:
                text = mutated_source(source, m.number)
                try:
                    swap.write(text)
                    outcome = run_tests(tests, args.timeout)
                finally:
                    swap.restore()
                by = _culprit(outcome.output) if outcome.status == "failed" else ""
                result = Result(m, VERDICT[outcome.status], outcome.seconds, by)
                results.append(result)
                print(
                    f"[{m.number:>{width}}/{everything}] {result.status.upper():<9}"
                    f"{module.name}:{m.lineno}  {m.operator}: {m.change}  "
                    f"({outcome.seconds:.1f}s){'  by ' + by if by else ''}",
                    flush=True,
                )
    except KeyboardInterrupt:
        print(summary(name, results, len(found), time.monotonic() - started), flush=True)
        print(f"mutate: interrupted; {name} is restored", file=sys.stderr)
        return 130

    elapsed = time.monotonic() - started
    print(summary(name, results, len(found), elapsed))
    if args.json:
        _report(
            args.json,
            {
                "module": name,
                "tests": list(tests),
                "timeout": args.timeout,
                "baseline_seconds": round(baseline.seconds, 2) if baseline else None,
                "seconds": round(elapsed, 2),
                "counts": {
                    s: sum(r.status == s for r in results)
                    for s in ("killed", "survived", "timeout")
                },
                "mutants": [
                    {
                        **dataclasses.asdict(r.mutant),
                        "status": r.status,
                        "seconds": round(r.seconds, 2),
                        "by": r.by,
                    }
                    for r in results
                ],
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
