"""Azurite's queue service for the tests: the real Storage queue API on a loopback port.

Installed by the project (``tools/package.json``, ``npm ci --prefix tools``; ``.ci/run`` does
it); started once per test session on a free port, in memory, and stopped at the end.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BINARY = ROOT / "tools" / "node_modules" / ".bin" / "azurite-queue"

# Azurite's well-known development account: published by Microsoft, not a secret.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
_LISTENING = re.compile(r"successfully listens on http://127\.0\.0\.1:(\d+)")


def missing_reason() -> str | None:
    """Why Azurite cannot run here, or None."""
    if not BINARY.exists():
        return f"Azurite is not installed ({BINARY.relative_to(ROOT)}: run 'npm ci --prefix tools')"
    from shutil import which

    if which("node") is None:
        return "Node.js is not installed (Azurite needs it)"
    return None


class Azurite:
    """One ``azurite-queue`` process; ``connection_string`` once started."""

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self._process: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"QueueEndpoint=http://127.0.0.1:{self.port}/{ACCOUNT};"
        )

    def start(self, timeout: float = 30.0) -> None:
        self._workdir.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            [
                str(BINARY),
                "--inMemoryPersistence",
                "--disableTelemetry",
                "--skipApiVersionCheck",
                "--queueHost",
                "127.0.0.1",
                "--queuePort",
                "0",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=self._workdir,
        )
        assert self._process.stdout is not None
        found = threading.Event()
        lines: list[str] = []

        def read() -> None:
            assert self._process is not None and self._process.stdout is not None
            for line in self._process.stdout:  # keep draining so the pipe never fills
                if not found.is_set():
                    lines.append(line)
                    match = _LISTENING.search(line)
                    if match:
                        self.port = int(match.group(1))
                        found.set()

        threading.Thread(target=read, name="azurite-output", daemon=True).start()
        deadline = time.monotonic() + timeout
        while not found.wait(0.1):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("Azurite did not start:\n" + "".join(lines[-20:]))

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
