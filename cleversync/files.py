"""Local files that hold student data or secrets are their owner's alone, whatever the umask.

The DataDir holds SQLite databases (names, grades, enrolments) and the local secrets file:
folders CleverSync creates are 0700 and files 0600. Folders and files an operator made
are left as they are.
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dir(path: Path) -> None:
    """Create ``path`` and any missing parents as 0700 (an existing folder is left alone)."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:  # another process made it first
            continue
        os.chmod(folder, PRIVATE_DIR)  # mkdir's mode is cut by the umask, never widened


def create_private_file(path: Path) -> None:
    """Create an empty ``path`` as 0600 unless it exists (SQLite keeps the mode it finds,
    and gives its -wal and -shm files the same)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)


def open_to_others(path: Path) -> int | None:
    """The file's permission bits when group or others may read or write it, else None."""
    try:
        bits = path.stat().st_mode & 0o777
    except OSError:
        return None
    return bits if bits & 0o077 else None
