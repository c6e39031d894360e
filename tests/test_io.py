"""Atomic output (rerank_plugins/_io.py): every writer goes through one helper."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import rerank_plugins

# The package under test (the checkout, or wherever PYTHONPATH points), for the subprocess.
PACKAGE_ROOT = Path(rerank_plugins.__file__).resolve().parents[1]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    from rerank_plugins._io import atomic_write

    target = tmp_path / "report.json"
    target.write_text('{"old": true}\n', encoding="utf-8")

    def half_then_fail(fh):
        fh.write(b'{"new": ')
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match=f"cannot write {target}: No space left on device") as info:
        atomic_write(target, half_then_fail)
    assert info.value.filename == str(target)
    assert target.read_text(encoding="utf-8") == '{"old": true}\n'
    assert leftovers(tmp_path) == []

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, lambda fh: (fh.write(b"x"), (_ for _ in ()).throw(KeyboardInterrupt())))
    assert target.read_text(encoding="utf-8") == '{"old": true}\n' and leftovers(tmp_path) == []

    assert atomic_write(target, lambda fh: fh.write(b"new\n")) == target
    assert target.read_text(encoding="utf-8") == "new\n" and leftovers(tmp_path) == []
    assert target.stat().st_mode & 0o777 == 0o644


def test_unwritable_directories_are_named(tmp_path):
    from rerank_plugins._io import atomic_write, check_writable

    missing = tmp_path / "no" / "dir" / "r.json"
    with pytest.raises(OSError, match=f"cannot write {missing}"):
        check_writable(missing)
    with pytest.raises(OSError, match=f"cannot write {missing}"):
        atomic_write(missing, lambda fh: fh.write(b"{}"))
    check_writable(tmp_path / "fine.json")
    assert list(tmp_path.iterdir()) == []


FULL_DISK = textwrap.dedent(
    """
    import json, resource, signal, sys
    from pathlib import Path
    from rerank_plugins.evaluation.pipeline import EvalReport

    target = Path(sys.argv[1])
    report = EvalReport(retrieval={"hit@1": 0.5}, reranked={"hit@1": 0.9}, timing={"total_s": 1.0},
                        config={"padding": ["x" * 100] * 200})  # a report of ~20 kB
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # a disk that fills up after 4,096 bytes
    try:
        report.write_json(target)
    except OSError as exc:
        print(json.dumps({"error": str(exc)}))
    else:
        print(json.dumps({"error": None}))
    """
)


def test_report_on_a_full_disk_keeps_the_previous_report(tmp_path):
    """Before: the previous report was replaced by a truncated 4,096-byte JSON, and the error named no file."""
    target = tmp_path / "report.json"
    previous = json.dumps({"retrieval": {"hit@1": 0.1}}) + "\n"
    target.write_text(previous, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-c", FULL_DISK, str(target)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120, env={**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)})
    assert proc.returncode == 0, proc.stderr
    error = json.loads(proc.stdout)["error"]
    assert error is not None and str(target) in error
    assert target.read_text(encoding="utf-8") == previous
    assert leftovers(tmp_path) == []
