"""Atomic file writes: a crash at any point leaves the old file or the new one.

The bytes go to a temporary file in the destination's own folder (a rename
across file systems is a copy, not atomic), which is flushed and fsynced
before ``os.replace`` puts it in place; the folder is fsynced after, so the
rename itself survives a power cut. A process killed mid-save leaves only a
``.<name>.<pid>.*.tmp`` sibling, which the next save removes.

Example:
    >>> import os, tempfile
    >>> from gpunet.saving.atomic import write_atomic
    >>> path = os.path.join(tempfile.mkdtemp(), "model.gpunet")
    >>> write_atomic(path, b"new contents")
    >>> with open(path, "rb") as f:
    ...     f.read()
    b'new contents'
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Any

CHUNK = 1 << 20


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but belongs to someone else
        return True
    return True


def remove_stale(folder: str, name: str) -> list[str]:
    """Delete temporary files left by saves of ``name`` whose process is gone.

    This process never leaves one behind (a failed save removes its own), so a
    temp file with our pid belongs to a save in flight in another thread."""
    removed: list[str] = []
    prefix = f".{name}."
    try:
        entries = os.listdir(folder)
    except OSError:
        return removed
    for entry in entries:
        if not (entry.startswith(prefix) and entry.endswith(".tmp")):
            continue
        pid_text = entry[len(prefix) :].split(".", 1)[0]
        if not pid_text.isdigit():
            continue
        pid = int(pid_text)
        if pid == os.getpid() or _pid_alive(pid):
            continue  # another live process is saving right now
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(folder, entry))
            removed.append(entry)
    return removed


def _mode_for(path: str) -> int:
    try:
        return os.stat(path).st_mode & 0o777  # keep an existing file's permissions
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def _write_all(fd: int, data: Any) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view[:CHUNK])
        view = view[n:]


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open a folder
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse to fsync a folder; the rename is done anyway
    finally:
        os.close(fd)


def write_atomic(path: Any, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file, fsync, ``os.replace``).

    Raises:
        OSError: as the operating system reported it, with ``path`` as its
            filename; the temporary file is removed and ``path`` is untouched.
    """
    path = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(path)
    remove_stale(folder, name)
    mode = _mode_for(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.{os.getpid()}.", suffix=".tmp")
    except OSError as exc:
        raise _with_path(exc, path) from exc
    try:
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, mode)
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:  # KeyboardInterrupt too: never leave the temp file
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _with_path(exc, path) from exc
        raise
    _fsync_dir(folder)


def _with_path(exc: OSError, path: str) -> OSError:
    if exc.errno is None:
        return exc
    return type(exc)(exc.errno, f"{exc.strerror} (while saving)", path)
