"""Atomic outputs: nothing half-written survives a failure, and outputs are world-readable."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pgt.errors import PgtError
from pgt.io import atomic_dir, atomic_file, read_json, write_json


def test_atomic_dir_failure_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "half.txt").write_text("partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_refuses_existing_and_overwrites_on_request(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(PgtError, match="already exists"):
        with atomic_dir(out):
            pass
    with atomic_dir(out, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]


def test_outputs_follow_umask_not_private_temp_modes(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "out") as tmp:
            write_json(tmp / "a.json", {"x": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "out" / "a.json").stat().st_mode) == 0o644


def test_atomic_file_failure_keeps_previous_content(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("good")
    with pytest.raises(RuntimeError):
        with atomic_file(path) as handle:
            handle.write("bad")
            raise RuntimeError("boom")
    assert path.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_read_json_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(PgtError, match="not found"):
        read_json(tmp_path / "missing.json", "manifest")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(PgtError, match="corrupt") as info:
        read_json(tmp_path / "bad.json", "manifest")
    assert "\n" not in str(info.value)
