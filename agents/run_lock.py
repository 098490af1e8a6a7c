"""One writer per run directory: a second process on a run directory in use refuses at once.

Two processes training into one directory (a ``resume=`` while the run is still going, a
requeued job whose first instance has not died yet) would interleave ``metrics.csv`` rows and
overwrite each other's checkpoints. ``RunDirLock`` holds an exclusive ``flock`` on
``<run dir>/run.lock`` for the whole run. The kernel releases it when its process dies, however
it dies, so the lock of a dead process is simply taken over; the file records the holder's pid
and host for the error message. (``flock`` is local to one machine on some network file
systems: two machines sharing a directory over NFS are not kept apart by it.)
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path
from typing import Optional

LOCK_FILE = "run.lock"


class RunDirInUse(RuntimeError):
    """Another live process holds the run directory."""


def lock_holder(run_dir: Path) -> Optional[str]:
    """Who holds ``run_dir``'s lock now ("pid N on host since ..."), or None when no live process does.

    Probes with a shared lock, released at once: a run starting in that instant would be refused
    with ``RunDirInUse`` and could simply be launched again."""
    path = Path(run_dir) / LOCK_FILE
    if not path.is_file():
        return None
    with open(path) as file:
        try:
            fcntl.flock(file, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _recorded_holder(file)
        fcntl.flock(file, fcntl.LOCK_UN)
    return None


def _recorded_holder(file) -> str:
    """What the holder wrote into the lock file ("pid N on host since ...")."""
    file.seek(0)
    return file.read().strip() or "another process"


class RunDirLock:
    """``with RunDirLock(run_dir):`` — raises ``RunDirInUse`` naming the holder if the directory is taken."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self._file = None
        # What the lock file still said when this process took it: a holder that died without
        # releasing (a clean exit empties the file). None after a clean exit or on a new directory.
        self.previous_holder: Optional[str] = None

    def acquire(self) -> "RunDirLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = open(self.path, "a+")
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _recorded_holder(file)
            file.close()
            raise RunDirInUse(
                f"run directory {self.path.parent} is in use by {holder}; wait for that run to end or stop it "
                "(a second writer would mix its metrics and checkpoints into the first one's)"
            ) from None
        file.seek(0)
        self.previous_holder = file.read().strip() or None
        file.seek(0)
        file.truncate()
        file.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        file.flush()
        self._file = file
        return self

    def release(self) -> None:
        if self._file is not None:
            self._file.truncate(0)  # a clean exit leaves no holder behind (see ``previous_holder``)
            self._file.flush()
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> "RunDirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
