"""xling.utils.io: outputs that cannot be written are one-line errors naming the path, temporaries
of killed writers are cleaned, strict text reading (NUL bytes, CRLF)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from xling.errors import XlingError
from xling.utils import io
from xling.utils.io import atomic_dir, atomic_path, check_writable, read_lines, remove_stale_temps, write_text_atomic


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _temp_name(target: str, pid: int, host: str | None = None) -> str:
    return f".{target}.{host or io._HOST}-{pid}.abc123_x.tmp"


def test_unwritable_targets_are_one_line_errors_naming_the_path(tmp_path):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    cases = [
        (lambda: write_text_atomic(tmp_path / "afile" / "out.txt", "y"), "afile/out.txt", "not a directory"),
        (lambda: write_text_atomic(tmp_path / "adir", "y"), "adir", "is a directory"),
        (lambda: atomic_dir(tmp_path / "afile").__enter__(), "afile", "not a directory"),
        (lambda: check_writable(tmp_path / "afile" / "a" / "b", "dir"), "afile/a/b", "not a directory"),
    ]
    for call, name, reason in cases:
        with pytest.raises(XlingError) as e:
            call()
        msg = str(e.value)
        assert "\n" not in msg and str(tmp_path / name) in msg and reason in msg, msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile"] and (tmp_path / "afile").read_text() == "x"


def test_permission_denied_is_a_one_line_error(tmp_path, monkeypatch):
    """A read-only directory: as root (CI) the kernel lets every write through, so the refusal is
    simulated where it happens (mkstemp / rename); as another user the real chmod is tried too."""
    target = tmp_path / "ro" / "out.txt"
    target.parent.mkdir()

    def refuse(*args, **kw):
        raise PermissionError(errno.EACCES, "Permission denied", kw.get("dir") or args[-1])

    with monkeypatch.context() as m:
        m.setattr(tempfile, "mkstemp", refuse)
        with pytest.raises(XlingError, match=r"ro/out.txt: cannot write \(permission denied\)"):
            write_text_atomic(target, "x")
    with monkeypatch.context() as m:
        m.setattr(os, "replace", lambda a, b: refuse(b))
        with pytest.raises(XlingError, match=r"ro/out.txt: cannot write \(permission denied\)"):
            write_text_atomic(target, "x")
    assert list(target.parent.iterdir()) == []  # the temporary is gone too
    if os.geteuid() != 0:
        target.parent.chmod(0o555)
        try:
            with pytest.raises(XlingError, match="permission denied"):
                check_writable(target)
            with pytest.raises(XlingError, match="permission denied"):
                write_text_atomic(target, "x")
        finally:
            target.parent.chmod(0o755)


def test_disk_full_while_writing_is_a_one_line_error(tmp_path):
    with pytest.raises(XlingError, match=r"out.txt: cannot write \(no space left on the device\)"):
        with atomic_path(tmp_path / "out.txt"):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OSError, match="unrelated"):  # an error about another file passes through
        with atomic_path(tmp_path / "out.txt"):
            raise FileNotFoundError(errno.ENOENT, "unrelated", str(tmp_path / "input.txt"))


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    dead, alive = _dead_pid(), os.getppid()
    stale_file = tmp_path / _temp_name("x.npy", dead)
    stale_dir = tmp_path / _temp_name("step_00000003", dead)
    live = tmp_path / _temp_name("x.npy", alive)
    other_host = tmp_path / _temp_name("x.npy", dead, host="ffffff" if io._HOST != "ffffff" else "eeeeee")
    unrelated = tmp_path / ".notes.tmp"
    stale_file.write_bytes(b"half")
    stale_dir.mkdir()
    (stale_dir / "model.safetensors").write_bytes(b"half")
    for p in (live, other_host, unrelated):
        p.write_bytes(b"keep")
    assert remove_stale_temps(tmp_path, "y.npy") == []  # only the target's own temporaries
    assert sorted(remove_stale_temps(tmp_path)) == sorted([stale_file, stale_dir])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (live, other_host, unrelated))
    stale_file.write_bytes(b"half")
    write_text_atomic(tmp_path / "x.npy", "done")  # the next write of the target cleans its leftovers
    assert not stale_file.exists() and live.exists() and (tmp_path / "x.npy").read_text() == "done"


def test_kill_9_during_embed_leaves_a_temporary_that_the_next_run_removes(workspace, tmp_path):
    """A real ``kill -9`` in the middle of an ``xling embed --mmap`` write, then a rerun."""
    src = tmp_path / "in.txt"
    src.write_text("".join(f"line {i} of a longer input to embed\n" for i in range(60_000)), encoding="utf-8")
    out = tmp_path / "out" / "x.npy"
    cmd = [sys.executable, "-m", "xling.cli", "embed", "--model", str(workspace.laser), "--lang", "en",
           "--input", str(src), "--out", str(out), "--mmap", "--chunk", "500", "--quiet"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if out.parent.exists() and list(out.parent.glob(".x.npy.*.tmp")):
            break  # the memory-mapped output is being written
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    left = list(out.parent.glob(".x.npy.*.tmp"))
    assert len(left) == 1 and not out.exists()
    small = tmp_path / "small.txt"
    small.write_text("a\nb\n", encoding="utf-8")
    rerun = [*cmd[:cmd.index("--input")], "--input", str(small), "--out", str(out), "--quiet"]
    done = subprocess.run(rerun, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not left[0].exists() and np.load(out).shape == (2, 32)


def test_nul_bytes_and_crlf(tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes(b"one\r\ntwo\r\n")
    assert read_lines(p) == ["one", "two"]
    p.write_bytes(b"one\ntw\0o\n")
    with pytest.raises(XlingError, match=r"t.txt:2: NUL byte"):
        read_lines(p)
    p.write_bytes("one\n".encode("utf-16"))  # UTF-16 read as UTF-8: invalid or NUL, never text
    with pytest.raises(XlingError, match=r"t.txt:1: (invalid UTF-8|NUL byte)"):
        read_lines(p)
