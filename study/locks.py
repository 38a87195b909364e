"""One process at a time: OS-level locks on a run directory or a cache entry.

A lock is `fcntl.flock` on a `.lock` file inside the folder: the kernel releases it when its holder exits, however
it exits (`kill -9` included), so a lock never outlives its process and needs no cleaning up. The file records the
holder's process id and command line, for the message a second process prints. Within one process a folder's lock
is taken once and shared (a study holds its run's lock and then runs the analysis of that same run).
"""
import fcntl
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from study.errors import StudyError

LOCK_FILE = ".lock"
_held = {}  # folder -> [open lock file, how many holders in this process]


def holder_of(lock_path: Path) -> str:
    """'process N (command)' as the holder wrote it, or 'another process' when the file says nothing."""
    try:
        text = lock_path.read_text().strip()
    except OSError:
        text = ""
    return text or "another process"


def _open(folder: Path):
    try:
        return open(folder / LOCK_FILE, "a+")
    except OSError as error:
        raise StudyError(f"cannot lock {folder} ({error.strerror}); choose a writable folder") from None


def _record_holder(handle) -> None:
    handle.seek(0)
    handle.truncate()
    handle.write(f"process {os.getpid()} ({' '.join(sys.argv)[:200]})")
    handle.flush()


@contextmanager
def exclusive(folder: Path, what: str):
    """Hold `folder`'s lock for the block, or refuse at once in one line naming the process that holds it.
    `what` names the folder in that line ('run runs/x')."""
    folder = Path(folder).resolve()
    if folder in _held:
        _held[folder][1] += 1
        try:
            yield
        finally:
            _held[folder][1] -= 1
        return
    handle = _open(folder)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = holder_of(folder / LOCK_FILE)
        handle.close()
        raise StudyError(f"{what} is in use by {holder}; wait for it to finish (or stop it), then try again") from None
    _record_holder(handle)
    _held[folder] = [handle, 1]
    try:
        yield
    finally:
        _held[folder][1] -= 1
        if not _held[folder][1]:
            del _held[folder]
            handle.close()  # releases the lock


@contextmanager
def waiting(folder: Path, on_wait):
    """Hold `folder`'s lock for the block, waiting for another process that holds it (on_wait(holder) is called
    once, before waiting): for work that the other process is doing already, e.g. building a cache entry."""
    folder = Path(folder).resolve()
    handle = _open(folder)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_wait(holder_of(folder / LOCK_FILE))
            fcntl.flock(handle, fcntl.LOCK_EX)  # blocks until the holder ends or lets go
        _record_holder(handle)
        yield
    finally:
        handle.close()
