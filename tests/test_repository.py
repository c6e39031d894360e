"""The repository's own contract: layout, CI command, lint."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_required_layout():
    for name in ("pyproject.toml", "rerank_plugins", "tests", "examples", "README.md", ".ci/run", "benchmarks"):
        assert (ROOT / name).exists(), name
    assert (ROOT / "rerank_plugins" / "py.typed").exists()


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- test-command -->\s*```(?:bash|sh)?\n(.+?)\n```", readme)
    assert match, "README.md must show the test command after a <!-- test-command --> marker"
    command = match.group(1).strip()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip()]
    assert ci_lines[-1] == command
    assert ci_lines.index("pip install --quiet torch==2.13.0") < ci_lines.index("pip install --quiet -e '.[test]'")


def test_ruff_is_clean():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (it comes with the 'test' extra)")
    out = subprocess.run(
        [ruff, "check", "rerank_plugins", "tests", "examples", "benchmarks"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_no_print_in_library_code():
    offenders = [
        f"{path.relative_to(ROOT)}:{i}"
        for path in (ROOT / "rerank_plugins").rglob("*.py")
        if path.name not in ("cli.py", "__main__.py")
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.match(r"\s*print\(", line)
    ]
    assert offenders == []
