"""Writing report files (HTML, CSV, JSON): a bad path is one line naming it, checked before the work.

A folder given where a file is wanted, a folder that cannot be created, a read-only location or a
full disk are refused with the option and the path; ``perfkit run --html`` checks its path before
the pipeline runs, so a typo does not cost the run its report. Files are written whole: to a
temporary name beside the target, then renamed, so a failed write never leaves half a report.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from perfkit.errors import UsageError


def check_writable(path: str | os.PathLike, flag: str) -> Path:
    """``path`` as a Path, or a UsageError when a file cannot be written there."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise UsageError(f"{flag} {path} is a directory: give a file name")
    folder = _existing_ancestor(path.parent)
    if not folder.is_dir():
        raise UsageError(f"{flag} {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"{flag} {path}: permission denied (cannot write in {folder})")
    return path


def write_text(path: str | os.PathLike, text: str, flag: str) -> Path:
    """Write ``text`` to ``path`` atomically; every OSError becomes one line naming ``flag`` and the path."""
    path = check_writable(path, flag)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        why = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise UsageError(f"cannot write {flag} {path}: {why}") from None
    return path


def _existing_ancestor(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder
