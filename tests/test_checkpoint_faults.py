"""Crash safety of every save: a process killed (SIGKILL) at any point of a write,
a full disk, or an exception in the writer leaves the previous file intact and
loadable, and the next save leaves no temporary file behind."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import gpunet as gn
from gpunet.saving import atomic

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")

CHILD = textwrap.dedent("""
    import os, signal, sys, tempfile
    import numpy as np, gpunet as gn
    from gpunet.saving import atomic
    path, point = sys.argv[1], sys.argv[2]
    def model(value, n=64):
        m = gn.Sequential([gn.layers.Dense(n, input_shape=(n,), kernel_initializer=
                           gn.initializers.Constant(value))])
        return m
    model(1.0).save(path)  # the previous file
    atomic.CHUNK = 4096  # many writes: a kill can land between them
    die = lambda: os.kill(os.getpid(), signal.SIGKILL)
    real = {"write": os.write, "fsync": os.fsync, "replace": os.replace,
            "mkstemp": tempfile.mkstemp}
    calls = {"write": 0, "fsync": 0}
    def write(fd, data):
        calls["write"] += 1
        if point == "mid-write" and calls["write"] == 3:
            real["write"](fd, bytes(data)[: len(data) // 2]); die()
        return real["write"](fd, data)
    def fsync(fd):
        calls["fsync"] += 1
        if point == "before-fsync" and calls["fsync"] == 1: die()
        real["fsync"](fd)
        if point == "after-fsync" and calls["fsync"] == 1: die()
        if point == "dir-fsync" and calls["fsync"] == 2: die()
    def replace(a, b):
        if point == "before-replace": die()
        real["replace"](a, b)
        if point == "after-replace": die()
    def mkstemp(*a, **k):
        out = real["mkstemp"](*a, **k)
        if point == "after-mkstemp": die()
        return out
    os.write, os.fsync, os.replace, tempfile.mkstemp = write, fsync, replace, mkstemp
    if point == "loop":  # save forever, alternating two models, until killed
        a, b = model(1.0), model(2.0)
        atomic.CHUNK = 1 << 20
        print("ready", flush=True)
        while True:
            a.save(path); b.save(path)
    model(2.0).save(path)
    print("finished")
""")
POINTS = {  # where the kill lands -> which file must be there afterwards
    "after-mkstemp": 1.0, "mid-write": 1.0, "before-fsync": 1.0, "after-fsync": 1.0,
    "before-replace": 1.0, "after-replace": 2.0, "dir-fsync": 2.0,
}  # fmt: skip


def _value(path):
    return float(gn.models.load_model(path).get_weights()[0][0, 0])


def _temps(folder):
    return [p for p in os.listdir(folder) if p.endswith(".tmp")]


@pytest.mark.parametrize("point", list(POINTS))
def test_sigkill_at_each_point_of_a_save_keeps_a_loadable_file(tmp_path, point):
    path = tmp_path / "m.gpunet"
    child = subprocess.run([sys.executable, "-c", CHILD, str(path), point],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert _value(path) == POINTS[point]  # the old file, or the complete new one
    gn.Sequential([gn.layers.Dense(2, input_shape=(2,))]).save(path)  # the next save
    assert os.listdir(tmp_path) == ["m.gpunet"]  # the dead writer's temp file is gone


def test_sigkill_at_random_moments_of_repeated_saves(tmp_path):
    path = tmp_path / "m.gpunet"
    rng = random.Random(0)
    seen = set()
    for _ in range(6):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), "loop"],
                                 stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0.0, 0.3))
        child.kill()
        child.wait(timeout=60)
        child.stdout.close()
        seen.add(_value(path))  # always loads: one of the two complete files
    assert seen <= {1.0, 2.0}
    gn.Sequential([gn.layers.Dense(2, input_shape=(2,))]).save(path)
    assert _temps(tmp_path) == []


FULL_DISK = textwrap.dedent("""
    import os, resource, signal, sys
    import gpunet as gn
    path = sys.argv[1]
    gn.Sequential([gn.layers.Dense(4, input_shape=(4,))]).save(path)
    size = os.path.getsize(path)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, resource.RLIM_INFINITY))
    try:
        gn.Sequential([gn.layers.Dense(64, input_shape=(64,))]).save(path)
    except OSError as exc:
        print(type(exc).__name__, exc.errno, exc.filename)
""")


@pytest.mark.skipif(sys.platform == "win32", reason="needs RLIMIT_FSIZE")
def test_a_full_disk_raises_oserror_naming_the_file_and_keeps_the_old_one(tmp_path):
    path = tmp_path / "m.gpunet"
    child = subprocess.run([sys.executable, "-c", FULL_DISK, str(path)],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert child.returncode == 0, child.stderr
    name, errno, filename = child.stdout.split()
    assert name == "OSError" and int(errno) == 27 and filename == str(path)  # EFBIG
    assert gn.models.load_model(path).count_params() == 20
    assert os.listdir(tmp_path) == ["m.gpunet"]


def _old_file(tmp_path):
    path = tmp_path / "m.gpunet"
    gn.Sequential([gn.layers.Dense(3, input_shape=(3,))]).save(path)
    return path, path.read_bytes()


@pytest.mark.parametrize("exc", [RuntimeError("writer bug"), KeyboardInterrupt(),
                                 OSError(28, "No space left on device")])  # fmt: skip
def test_an_exception_in_the_writer_removes_the_temp_file(tmp_path, monkeypatch, exc):
    path, before = _old_file(tmp_path)
    real = atomic._write_all

    def failing(fd, data):
        real(fd, bytes(data)[: len(data) // 2])
        raise exc

    monkeypatch.setattr(atomic, "_write_all", failing)
    with pytest.raises(type(exc)) as info:
        gn.Sequential([gn.layers.Dense(8, input_shape=(8,))]).save(path)
    if isinstance(exc, OSError):
        assert info.value.filename == str(path) and "No space left" in str(info.value)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.gpunet"]


def test_a_failing_rename_keeps_the_old_file(tmp_path, monkeypatch):
    path, before = _old_file(tmp_path)

    def refuse(a, b):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(atomic.os, "replace", refuse)
    with pytest.raises(PermissionError) as info:
        gn.Sequential([gn.layers.Dense(8, input_shape=(8,))]).save(path)
    monkeypatch.undo()
    assert info.value.filename == str(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.gpunet"]


def test_stale_temp_files_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for pid in (int(dead.stdout), live.pid, os.getpid()):
            (tmp_path / f".m.gpunet.{pid}.abc123.tmp").write_bytes(b"partial")
        (tmp_path / ".other.gpunet.1.x.tmp").write_bytes(b"not ours")
        gn.Sequential([gn.layers.Dense(2, input_shape=(2,))]).save(tmp_path / "m.gpunet")
        assert sorted(_temps(tmp_path)) == sorted([
            f".m.gpunet.{live.pid}.abc123.tmp", f".m.gpunet.{os.getpid()}.abc123.tmp",
            ".other.gpunet.1.x.tmp"])  # fmt: skip
    finally:
        live.kill()
        live.wait()


def test_saved_files_keep_the_permissions_of_the_file_they_replace(tmp_path):
    path, _ = _old_file(tmp_path)
    os.chmod(path, 0o640)
    gn.Sequential([gn.layers.Dense(3, input_shape=(3,))]).save(path)
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert np.isfinite(gn.models.load_model(path).get_weights()[0]).all()
