"""Running code in a fresh Python, for what only a new process shows (what it imports)."""

from __future__ import annotations

import subprocess
import sys


def python_output(code: str) -> str:
    """The stdout of ``python -c code`` in this environment; fails the test if it fails."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
