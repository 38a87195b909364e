"""A search stopped by its storage: which file could not be written, and why, from whatever Ray and Optuna raised.

A full disk or a read-only file system under `--storage` reaches the search in three shapes:
- an `OSError` (Ray's experiment state, a trial's checkpoint) somewhere in the exception's chain;
- SQLite's own error (Optuna's `optuna.db`), which is no `OSError`: `sqlite3.OperationalError("database or disk is
  full")`, wrapped by SQLAlchemy, then by Optuna's `StorageInternalError`;
- text only: Ray re-raises an error from its controller or a trial worker as a `TuneError` or `RayTaskError` whose
  message is the original traceback.
Each becomes one `OSError(errno, cause, path)`, which the study's command prints as one line with the way to resume.

Sometimes none of them is left: a trial whose folder or first files could not be written is cancelled by Ray and
ends with nothing but "the actor died". So a search whose trials ended in error that names no cause also tries
writing to its folder (`storage_refuses`): a disk that refuses that too is the cause.
"""
import errno
import os
import re
from pathlib import Path

from study.errors import WRITE_ERRNOS, is_write_error

# SQLite's messages for a write the disk refused, with the errno each stands for.
SQLITE_WRITE_ERRORS = {
    "database or disk is full": errno.ENOSPC,
    "attempt to write a readonly database": errno.EROFS,
}
# Python's rendering of an OSError in a traceback's text: "[Errno 28] No space left on device: '/path'".
ERRNO_IN_TEXT = re.compile(r"\[Errno (\d+)\] ([^:\n'\]]+)(?::\s*'([^'\n]+)')?")


def chain(error: BaseException):
    """The error, its causes and the errors it was raised while handling, each once."""
    seen, pending = set(), [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending += [current.__cause__, current.__context__]


def write_failure(error: BaseException, storage: Path, optuna_db: Path):
    """OSError(errno, cause, path) when `error` is a write under `storage` that the disk refused, else None.

    `optuna_db` names SQLite's file, whose errors carry no path; an OSError without one is named by `storage`.
    """
    errors = list(chain(error))
    for current in errors:
        if isinstance(current, OSError) and is_write_error(current):
            return OSError(current.errno, current.strerror, current.filename or f"a file under {storage}")
    text = "\n".join(str(current) for current in errors)
    for message, code in SQLITE_WRITE_ERRORS.items():
        if message in text:
            return OSError(code, f"{os.strerror(code)} (SQLite: {message})", str(optuna_db))
    for match in ERRNO_IN_TEXT.finditer(text):
        code = int(match.group(1))
        if errno.errorcode.get(code) in WRITE_ERRNOS:
            return OSError(code, match.group(2).strip(), match.group(3) or f"a file under {storage}")
    return None


PROBE_BYTES = 64 * 1024  # about a small trial checkpoint: a disk that cannot take this cannot hold a trial's files


def storage_refuses(folder: Path):
    """OSError(errno, cause, folder) when `folder` refuses a write of PROBE_BYTES that the disk must accept (written
    and synced, then removed), else None."""
    probe = Path(folder) / f".write-probe.{os.getpid()}"
    try:
        with open(probe, "wb") as f:
            f.write(bytes(PROBE_BYTES))
            f.flush()
            os.fsync(f.fileno())
    except OSError as error:
        if not is_write_error(error):
            raise
        return OSError(error.errno, error.strerror, f"a file under {folder}")
    finally:
        probe.unlink(missing_ok=True)
    return None
