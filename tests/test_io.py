"""Atomic outputs: nothing half-written survives a failure, and outputs are world-readable."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from pgt.errors import PgtError, one_line
from pgt.io import (
    atomic_dir,
    atomic_file,
    file_sha256,
    files_sha256,
    read_json,
    refuse_existing,
    write_json,
)


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


def test_atomic_dir_publishes_files_written_private(tmp_path: Path) -> None:
    """Libraries such as safetensors create 0600 files; the published output follows the umask."""
    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "out") as tmp:
            private = tmp / "weights.safetensors"
            private.write_bytes(b"x")
            os.chmod(private, 0o600)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out" / "weights.safetensors").stat().st_mode) == 0o644


def test_exclusive_lock_names_the_holder(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    from pgt.io import run_lock

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pgt.io import run_lock\n"
            "with run_lock(sys.argv[1]):\n print('locked', flush=True); time.sleep(30)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(PgtError, match=f"PID {holder.pid}"):
            with run_lock(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
    deadline = time.time() + 10
    with run_lock(tmp_path):  # the kernel released the dead holder's lock
        assert time.time() < deadline
        assert (tmp_path / ".lock").read_text() == f"{os.getpid()}\n"
    assert not (tmp_path / ".lock").exists()  # the holder removes its lock file


def test_output_locks_leave_no_file(tmp_path: Path) -> None:
    """`.NAME.lock` goes with the command, also when the block fails, and locks again afterwards."""
    from pgt.io import output_lock

    out = tmp_path / "out"
    with output_lock(out):
        assert (tmp_path / ".out.lock").read_text() == f"{os.getpid()}\n"
    with pytest.raises(RuntimeError), output_lock(out):
        raise RuntimeError("failed")
    with output_lock(out):
        pass
    assert not list(tmp_path.iterdir())


def test_refuse_overlap(tmp_path: Path) -> None:
    from pgt.io import refuse_overlap

    model = tmp_path / "models" / "a"
    for out in (model, model / "inner", tmp_path / "models"):
        with pytest.raises(PgtError, match="overlaps the input"):
            refuse_overlap(out, [model])
    refuse_overlap(tmp_path / "models" / "b", [model, None])


def test_remove_stale_temporaries_keeps_real_entries(tmp_path: Path) -> None:
    from pgt.io import remove_stale_temporaries

    (tmp_path / ".stage-1.tmp-abc").mkdir()
    (tmp_path / ".stage-1.tmp-abc" / ".stage-1.tmp-def").mkdir()
    (tmp_path / ".latest.json.tmp-xyz").write_text("{}")
    (tmp_path / ".stage-2.old-q").mkdir()
    (tmp_path / "stage-1").mkdir()
    (tmp_path / ".lock").write_text("1")
    remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "stage-1"]


def test_check_writable_is_one_line(tmp_path: Path) -> None:
    from pgt.io import check_writable

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(PgtError, match="cannot write to"):
        check_writable(blocker / "out")


def test_refuse_existing_names_the_path_and_the_way_out(tmp_path: Path) -> None:
    refuse_existing(tmp_path / "new")  # nothing there: fine
    refuse_existing(tmp_path, overwrite=True)
    with pytest.raises(PgtError) as caught:
        refuse_existing(tmp_path / ".", what="eval result")
    message = f"eval result {tmp_path / '.'} already exists (choose another --out or pass --overwrite)"
    assert str(caught.value) == message


def test_file_hashes_match_hashlib(tmp_path: Path) -> None:
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(os.urandom(3 << 20))  # several read blocks
    b.write_bytes(b"")
    assert file_sha256(a) == hashlib.sha256(a.read_bytes()).hexdigest()
    assert files_sha256([a, b]) == hashlib.sha256(b"a.bin" + a.read_bytes() + b"b.bin").hexdigest()
    assert files_sha256([b, a]) != files_sha256([a, b])


def test_one_line_folds_a_library_message() -> None:
    assert one_line(ValueError("bad\n  value\n\tat line 3")) == "bad value at line 3"
    assert one_line(KeyboardInterrupt()) == "KeyboardInterrupt"
    assert one_line(OSError("x" * 500)) == "x" * 300 + "…"


def test_a_full_disk_inside_safetensors_is_an_environment_error(tmp_path: Path) -> None:
    """`safetensors` reports a full disk as its own SafetensorError ("... os error 28"/27)."""
    import resource

    import torch
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    from pgt.io import environment_error

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, hard))  # writes past 1 KiB fail with EFBIG, like ENOSPC
    try:
        with pytest.raises(SafetensorError) as caught:
            save_file({"w": torch.zeros(4096)}, str(tmp_path / "w.safetensors"))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    message = environment_error(caught.value)
    assert message is not None and message.startswith("File too large") and "\n" not in message
    assert environment_error(ValueError("os error 2")) is None  # not an environment errno: a real bug stays loud
    assert environment_error(SafetensorError("header too large")) is None


def test_a_directory_pgt_did_not_write_is_refused_without_advising_overwrite(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("a user's file")
    for overwrite in (False, True):
        with pytest.raises(PgtError) as caught:
            refuse_existing(tmp_path, overwrite=overwrite, marker="substrate.json")
        assert "was not written by pgt (it holds notes.txt" in str(caught.value)
        assert "--overwrite" not in str(caught.value)
    (tmp_path / "substrate.json").write_text("{}")
    with pytest.raises(PgtError, match="pass --overwrite"):
        refuse_existing(tmp_path, marker="substrate.json")
    refuse_existing(tmp_path, overwrite=True, marker="substrate.json")
