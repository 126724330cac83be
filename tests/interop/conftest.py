"""Node.js for the interop tests: the pinned packages of package.json, installed with npm ci."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
NPM_SECONDS = 300.0


def _stale() -> list[str]:
    """Pinned packages that node_modules does not hold at their pinned version."""
    pinned: dict[str, str] = json.loads((HERE / "package.json").read_text())["dependencies"]
    stale = []
    for package, version in pinned.items():
        manifest = HERE / "node_modules" / package / "package.json"
        if not manifest.exists() or json.loads(manifest.read_text())["version"] != version:
            stale.append(package)
    return stale


@pytest.fixture(scope="session")
def node() -> str:
    """The node binary, with every pinned package installed (``npm ci`` when one is stale)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH: the interop tests need Node.js 20+")
    if _stale():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip(f"npm is not on PATH: cannot install {', '.join(_stale())} in {HERE}")
        installed = subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=NPM_SECONDS,
            check=False,
        )
        assert installed.returncode == 0, f"npm ci failed:\n{installed.stdout}\n{installed.stderr}"
        assert _stale() == []
    return node
