"""``hms --help`` lists every command with a line of its own, and every command's ``--help``
says what it does and what each of its arguments means."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from hms import cli


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser, str | None]]:
    """Every parser below ``parser``: its command path, itself, its line in its parent's help."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            summaries = {choice.dest: choice.help for choice in action._choices_actions}
            for name, child in action.choices.items():
                yield (*path, name), child, summaries.get(name)
                yield from _commands(child, (*path, name))


COMMANDS = list(_commands(cli.parser()))


def test_the_walk_finds_every_command() -> None:
    """Not vacuous: the commands the README documents are all there."""
    names = {" ".join(path) for path, _, _ in COMMANDS}
    assert {
        "serve",
        "worker",
        "token",
        "seed",
        "db upgrade",
        "documents push",
        "audit verify",
        "hospitals webhook",
        "members add",
        "jobs retry",
    } <= names
    assert len(names) >= 25


@pytest.mark.parametrize(
    ("path", "command", "summary"), COMMANDS, ids=["-".join(path) for path, _, _ in COMMANDS]
)
def test_every_command_has_a_summary_a_description_and_argument_help(
    path: tuple[str, ...], command: argparse.ArgumentParser, summary: str | None
) -> None:
    assert summary, f"hms {' '.join(path)} has no line in its parent's --help"
    assert command.description, f"hms {' '.join(path)} --help has no description"
    for action in command._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        assert action.help, f"hms {' '.join(path)}: {action.option_strings or action.dest}"


def test_the_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for path, _, summary in COMMANDS:
        if len(path) == 1:
            assert path[0] in text
            assert summary is not None
            assert summary.split()[0] in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "--port", "0"], "a port is a number from 1 to 65535, got '0'"),
        (["serve", "--port", "65536"], "a port is a number from 1 to 65535, got '65536'"),
        (["serve", "--port", "http"], "a port is a number from 1 to 65535, got 'http'"),
        (["serve", "--workers", "0"], "a number of processes from 1 to 1024, got '0'"),
        (["serve", "--host", ""], "an IP address or host name, got ''"),
    ],
)
def test_serve_flags_are_checked(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.parser().parse_args(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_serve_flags_are_parsed_and_verbose_is_kept_from_either_place() -> None:
    args = cli.parser().parse_args(["serve", "--host", "::1", "--port", "8001"])
    assert (args.host, args.port, args.workers, args.verbose) == ("::1", 8001, None, False)
    assert cli.parser().parse_args(["-v", "serve"]).verbose is True
    assert cli.parser().parse_args(["serve", "-v", "--workers", "3"]).workers == 3
    assert cli.parser().parse_args(["serve", "-v"]).verbose is True
