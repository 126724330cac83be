"""The mutant generator and the file guard of scripts/mutate.py (the tool itself runs by hand)."""

from __future__ import annotations

import ast
import importlib.util
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutate_script", ROOT / "scripts" / "mutate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


mutate = _load()

SAMPLE = '''\
"""A module docstring mentioning 1 < 2, which is text."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    LIMIT = 5


def pick(a: int, b: int = 3) -> bool:
    """Docstring: a < b."""
    lower = a < b
    return lower == (a <= b) and a is not None


def keep(x: list[int]) -> int:
    y = x[0] + 1  # pragma: no mutate
    return y


def skipped(x: int) -> bool:  # pragma: no mutate
    return x > 0
'''


def _by_operator(source: str) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for m in mutate.mutants(source):
        found.setdefault(m.operator, []).append(m)
    return found


def test_comparisons_flip_each_operator_of_a_chain() -> None:
    changes = [m.change for m in _by_operator(SAMPLE)["Compare"]]
    assert Counter(changes) == Counter(
        ["< -> <=", "< -> >", "== -> !=", "<= -> <", "<= -> >=", "is not -> is"]
    )


def test_docstrings_type_checking_annotations_and_pragmas_are_left_alone() -> None:
    found = mutate.mutants(SAMPLE)
    lines = {m.lineno for m in found}
    assert not lines & {1, 5, 6, 10}  # docstrings, the TYPE_CHECKING block
    assert 16 not in lines  # the pragma line
    assert not lines & {20, 21}  # the whole def under a pragma
    numbers = [m.change for m in found if m.operator == "Number"]
    assert numbers == ["3 -> 4", "3 -> 2"]  # a default is code; int/list[int] are not
    deleted = [(m.lineno, m.change) for m in found if m.operator == "Delete"]
    assert deleted == [(11, "Assign -> pass"), (12, "Return -> pass"), (17, "Return -> pass")]


def test_reports_quote_the_original_lines_and_number_them_in_source_order() -> None:
    source = "def f(a, b):\n    return (a\n            or b) if a != 0 else  not b\n"
    found = mutate.mutants(source)
    assert [m.number for m in found] == list(range(1, len(found) + 1))
    boolop = next(m for m in found if m.operator == "BoolOp")
    assert boolop.lineno == 2
    assert boolop.original == "return (a or b) if a != 0 else  not b"
    assert boolop.mutated == "return (a and b) if a != 0 else  not b"
    negate = next(m for m in found if m.operator == "Negate")
    assert negate.mutated == "or b) if not (a != 0) else  not b"


def test_mutated_source_is_the_reported_change(tmp_path: Path) -> None:
    source = (
        "def f(n, flag=True):\n"
        "    while n > 10:\n"
        "        n = n - 3\n"
        "    if n in (1, 2) and flag:\n"
        "        return 0\n"
        "    return n if n is not None else -1\n"
    )
    found = mutate.mutants(source)
    assert Counter(m.operator for m in found) == Counter(
        {"Number": 12, "Compare": 4, "Delete": 3, "Negate": 3, "BoolOp": 1, "Bool": 1}
    )
    for m in found:
        mutated = mutate.mutated_source(source, m.number)
        # Splicing the reported line into the original must give the very same program.
        spliced = source.replace(m.original, m.mutated, 1)
        assert ast.dump(ast.parse(mutated)) == ast.dump(ast.parse(spliced)), m
    # Negative results are real unary minus nodes, so precedence survives unparse.
    zero = next(m for m in found if m.change == "0 -> -1")
    namespace: dict[str, Any] = {}
    exec(mutate.mutated_source(source, zero.number), namespace)  # noqa: S102 - our own sample
    assert namespace["f"](1) == -1


def test_unparse_round_trip_keeps_behaviour() -> None:
    namespace: dict[str, Any] = {}
    exec(mutate.unmutated_source(SAMPLE), namespace)  # noqa: S102 - our own sample
    assert namespace["pick"](1) is True
    assert namespace["keep"]([4]) == 5


def test_swap_restores_bytes_and_mtime_even_when_the_run_fails(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_bytes(b"x = 1\r\n# keep this comment\r\n")
    os.utime(module, ns=(1_000_000_000, 1_000_000_000))
    before = module.read_bytes()
    handler = signal.getsignal(signal.SIGTERM)

    def interrupted_run() -> None:
        with mutate.Swap(module) as swap:
            swap.write("x = 2\n")
            assert module.read_text() == "x = 2\n"
            # SIGTERM unwinds like Ctrl-C while a mutant is in place.
            assert signal.getsignal(signal.SIGTERM) is mutate._interrupt
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted_run()
    assert signal.getsignal(signal.SIGTERM) is handler
    assert module.read_bytes() == before
    assert module.stat().st_mtime_ns == 1_000_000_000
    assert list(tmp_path.iterdir()) == [module]  # no temporary file left behind


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def test_only_committed_files_are_mutated(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("x = 1\n")
    _git(tmp_path, "init", "-q")
    assert mutate.uncommitted(module) == "is not tracked by git"
    _git(tmp_path, "add", "m.py")
    _git(tmp_path, "-c", "commit.gpgsign=false", "commit", "-q", "-m", "m")
    assert mutate.uncommitted(module) is None
    module.write_text("x = 2\n")
    assert mutate.uncommitted(module) == "has uncommitted changes"
    _git(tmp_path, "add", "m.py")  # staged is still not committed
    assert mutate.uncommitted(module) == "has uncommitted changes"


def test_a_kill_names_the_failing_test_not_a_captured_log_line() -> None:
    output = (
        "F\n---- Captured log call ----\n"
        "ERROR    hms.http:graphql.py:80 unexpected error at ['patients']\n"
        "=========== short test summary info ===========\n"
        "FAILED tests/api/test_reads.py::test_nested_relations - assert 1 == 2\n"
        "!!!! stopping after 1 failures !!!!\n1 failed in 3.10s\n"
    )
    assert mutate._culprit(output) == "tests/api/test_reads.py::test_nested_relations"
    assert mutate._culprit("ImportError while loading conftest\n1 error in 0.2s") == (
        "1 error in 0.2s"
    )


def test_default_test_table_names_real_paths() -> None:
    for module, tests in mutate.TESTS_FOR.items():
        assert (ROOT / module).is_file(), module
        for test in tests:
            assert (ROOT / test).exists(), test
    assert mutate.default_tests("hms/cli.py") == ("tests", "--ignore=tests/interop")


def test_list_runs_nothing_and_bad_usage_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    tokens = str(ROOT / "hms/security/tokens.py")
    assert mutate.main([tokens, "--list"]) == 0
    assert "Compare: != -> ==" in capsys.readouterr().out
    assert mutate.main([tokens, "--list", "--only", "1", "--", "-k", "leeway"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("[1] hms/security/tokens.py:")
    assert out.endswith(" -k leeway\n")  # what follows "--" goes to pytest as it is
    assert mutate.main([tokens, "--only", "999"]) == 2
    assert mutate.main([str(ROOT / "README.md")]) == 2
    with pytest.raises(SystemExit) as exit_:
        mutate.main([])
    assert exit_.value.code == 2
