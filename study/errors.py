"""User-facing errors: each carries one line that names the bad value and the valid choices.

Command-line entry points catch `StudyError` and print its message without a traceback (see study/cli.py).
"""


class StudyError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class UnknownNameError(StudyError, ValueError):
    """A name that is not in a registry (head, backbone, tree layout, preset, ...)."""


class DataError(StudyError):
    """The dataset is missing, unreadable or malformed."""


class ConfigError(StudyError, ValueError):
    """A configuration value is out of its valid range."""


class Interrupted(StudyError):
    """A long run stopped before it finished (Ctrl-C); what it finished is saved and can be resumed."""


# A write the disk or the file system refused: no space, over quota, no permission, read-only.
WRITE_ERRNOS = {"ENOSPC", "EDQUOT", "EACCES", "EPERM", "EROFS", "EFBIG"}


def is_write_error(error: OSError) -> bool:
    import errno

    return errno.errorcode.get(error.errno) in WRITE_ERRNOS
