"""The README's "First ten minutes", step by step, as a newcomer would take them.

The commands, the query and the expected output are read from that section of README.md, so
the README and this test cannot drift apart. One ``make run`` on the embedded default (a
fresh data dir: initdb, migrations, demo data) serves the whole module; the steps run in the
README's order and the last one stops it with Ctrl-C.

The installing half of ``make run`` is not repeated here (tests/console.py: ``make_run``); a
clean editable install is checked on its own for warnings.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.console import ROOT, VENV, Console, console, make_run
from tests.interop.servers import clean_env, free_port

README_PORT = "127.0.0.1:8000"


def _section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("\n## First ten minutes\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _blocks(language: str) -> list[str]:
    """The section's fenced blocks in ``language``, in order, without their list indent."""
    fence = re.compile(r"^( *)```(\w+)\n(.*?)^\1```$", re.MULTILINE | re.DOTALL)
    return [
        textwrap.dedent(found.group(3))
        for found in fence.finditer(_section())
        if found.group(2) == language
    ]


@dataclass
class Served:
    console: Console
    base: str
    env: dict[str, str]
    data_dir: Path

    def here(self, text: str) -> str:
        """README text with this server's address for the README's 127.0.0.1:8000."""
        return text.replace(f"http://{README_PORT}", self.base)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Step 1: ``make run`` with nothing configured but a fresh data dir and a free port."""
    data_dir = tmp_path_factory.mktemp("first-ten-minutes") / "data"
    port = free_port()
    env = clean_env(HMS_DATA_DIR=str(data_dir), HMS_PORT=str(port))
    with console(make_run(), env, timeout=300) as running:
        running.until("^listening on ")
        yield Served(running, f"http://127.0.0.1:{port}", env, data_dir)


def test_readme_section_has_the_steps_this_test_takes() -> None:
    """Not vacuous: the blocks the other tests run are there."""
    assert len(_blocks("text")) == 1
    assert len(_blocks("graphql")) == 1
    assert [bool(re.search(r"hms token", block)) for block in _blocks("sh")] == [True, False]
    assert "curl" in _blocks("sh")[1]
    assert "examples/react-dashboard/README.md" in _section()


def test_1_make_run_prints_what_the_readme_shows_and_no_warning(served: Served) -> None:
    printed = served.console.lines
    at = -1
    for expected in served.here(_blocks("text")[0]).splitlines():
        prefix = expected.split("…")[0]  # tokens are elided in the README
        found = [i for i, line in enumerate(printed) if line.startswith(prefix)]
        assert found, f"{expected!r} not printed:\n{served.console.text}"
        assert found[0] > at, f"{expected!r} out of order:\n{served.console.text}"
        if "…" not in expected:
            assert printed[found[0]] == expected
        at = found[0]
    # The first start of a fresh data dir: nothing alarming on the way (uvicorn's logger is
    # called "uvicorn.error", so levels are matched as words).
    alarming = re.compile(r"(?i:\bwarn)|\b(WARNING|ERROR|CRITICAL)\b|Traceback")
    assert not [line for line in printed if alarming.search(line)], served.console.text


def _graphiql_headers(served: Served) -> dict[str, str]:
    page = httpx.get(f"{served.base}/graphql", headers={"Accept": "text/html"}, timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    config_block = r'<script type="application/json" id="hms-graphiql-config">(.*?)</script>'
    found = re.search(config_block, page.text)
    assert found is not None, page.text
    config = json.loads(found.group(1))
    for source in re.findall(r'<script src="([^"]+)"', page.text):
        assert httpx.get(f"{served.base}{source}", timeout=10).status_code == 200, source
    assert config["hospital"] == "bayside"
    headers: dict[str, str] = config["headers"]
    return headers


def test_2_graphiql_is_served_with_a_token_filled_in(served: Served) -> None:
    headers = _graphiql_headers(served)
    assert headers["Authorization"].startswith("Bearer ey")


def test_3_the_sample_query_answers_from_the_demo_data(served: Served) -> None:
    """Run as GraphiQL runs it: the page's own headers, the README's document."""
    (query,) = _blocks("graphql")
    response = httpx.post(
        f"{served.base}/graphql",
        json={"query": query},
        headers=_graphiql_headers(served),
        timeout=10,
    )
    body = response.json()
    assert response.status_code == 200
    assert "errors" not in body, body
    data = body["data"]
    assert data["viewer"]["hospital"]["name"] == "Bayside Clinic"
    assert data["patientStats"]["total"] == 300
    patients = [edge["node"] for edge in data["patients"]["edges"]]
    assert len(patients) == 3
    assert all(patient["familyName"] and patient["mrn"] for patient in patients)
    for patient in patients:
        starts = [edge["node"]["startAt"] for edge in patient["appointments"]["edges"]]
        assert 1 <= len(starts) <= 2
        assert starts == sorted(starts, reverse=True)  # "their two newest"
    assert any(len(patient["appointments"]["edges"]) == 2 for patient in patients)


def _curl_with_httpx(command: str, token: str) -> Any:
    """The README's curl command, sent with httpx: same URL, headers and body."""
    words = shlex.split(command.replace("\\\n", " ").replace("$TOKEN", token))
    assert words[0] == "curl"
    url = next(word for word in words[1:] if word.startswith("http"))
    headers = dict(words[i + 1].split(": ", 1) for i, word in enumerate(words) if word == "-H")
    body = words[words.index("-d") + 1]
    return httpx.post(url, headers=headers, content=body, timeout=10).json()


def test_4_and_5_a_minted_token_works_with_the_readme_curl(served: Served) -> None:
    mint, call = (served.here(block) for block in _blocks("sh"))
    # The README says .venv/bin/hms: the venv the tests run in is that one (or CI's).
    mint = mint.replace(".venv/", f"{VENV}/")
    if shutil.which("curl") is not None:
        script = f"set -e\n{mint}\n{call}"
        answer = subprocess.run(
            ["sh", "-c", script],
            cwd=ROOT,
            env=served.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        body = json.loads(answer)
    else:
        line = next(line for line in mint.splitlines() if "hms token" in line)
        command = shlex.split(line.split("$(", 1)[1].rsplit(")", 1)[0])
        token = subprocess.run(
            command, cwd=ROOT, env=served.env, capture_output=True, text=True, check=True
        ).stdout.strip()
        body = _curl_with_httpx(call, token)
    assert "errors" not in body, body
    assert body["data"]["viewer"] == {"hospital": {"name": "Bayside Clinic"}}
    assert body["data"]["patientStats"]["total"] == 300
    assert "requestedQueryCost" in body["extensions"]["cost"]  # "its cost in extensions"
    anonymous = httpx.post(
        f"{served.base}/graphql", json={"query": "{ patientStats { total } }"}, timeout=10
    )
    assert anonymous.status_code == 401  # "Without the header it is 401"


def test_7_ctrl_c_stops_it_quietly(served: Served) -> None:
    status = served.console.stop(signal.SIGINT)  # the terminal's Ctrl-C: the whole group
    text = served.console.text
    assert "make: ***" not in text
    assert "Traceback" not in text
    assert "Application shutdown complete" in text
    assert status in (0, -signal.SIGINT), text  # make ends by the SIGINT it got, quietly
    postmaster = served.data_dir / "pg18" / "postmaster.pid"
    deadline = time.monotonic() + 20
    while postmaster.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not postmaster.exists(), "the embedded PostgreSQL outlived the server"


#: This machine's pip configuration names index directories that do not exist; pip says so
#: for every lookup. Not the project's, and not what a newcomer with a stock pip sees.
MACHINE_PIP_CONFIG = re.compile(r"^WARNING: Location '[^']*' is ignored")


def test_an_editable_install_prints_no_warning(tmp_path: Path) -> None:
    """What ``make run`` does to a fresh venv, for the project itself: no banner. (pip 25+
    shows build backends' warnings; setuptools warned about the flat layout's import hook
    until pyproject.toml chose the plain .pth file.)"""
    target = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True)
    result = subprocess.run(
        [
            sys.executable, "-m", "pip", "--python", str(target / "bin" / "python"),
            "install", "--disable-pip-version-check", "--no-deps", "-e", str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    output = (result.stdout + result.stderr).splitlines()
    assert result.returncode == 0, "\n".join(output)
    assert "Successfully installed hms" in "\n".join(output)
    noise = [
        line
        for line in output
        if re.search(r"warn|!!|\*\*\*", line, re.I) and not MACHINE_PIP_CONFIG.search(line)
    ]
    assert noise == [], "\n".join(output)
