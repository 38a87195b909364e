"""Files written whole or not at all."""
import os
from pathlib import Path


def write_atomic(path: Path, save) -> None:
    """save(temporary path), then rename over `path`: a killed run never leaves a half-written file under it."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda temporary: temporary.write_text(text))
