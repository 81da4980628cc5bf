"""The local secrets file: a JSON object mapping Key Vault secret names to values."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from cleversync.errors import SecretError, SecretStoreUnavailableError
from cleversync.files import open_to_others, private_dir
from cleversync.redaction import Redactor
from cleversync.secrets.base import SecretStore

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file's folder (no lock file to leave behind): two
    processes storing secrets at once (a loop of 'set-connection-string &') must not lose
    each other's write, which a read-modify-write of the file would."""
    try:
        import fcntl
    except ImportError:  # Windows: the threading lock alone
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


class LocalSecretStore(SecretStore):
    """Secrets in a JSON file (the laptop default), written atomically, readable by its owner."""

    def __init__(
        self,
        path: Path,
        *,
        cache_seconds: float = 900,
        redactor: Redactor | None = None,
        clock: Callable[[], float] | None = None,
        named_by: str | None = None,
    ) -> None:
        """``named_by``: the setting that names this file; the file must then exist (a
        mistyped name must not look like an empty store, nor silently start a new one)."""
        kwargs = {"clock": clock} if clock is not None else {}
        super().__init__(cache_seconds=cache_seconds, redactor=redactor, **kwargs)
        self.path = Path(path).absolute()  # messages name it where any shell finds it
        self._named_by = named_by
        self.description = f"local secrets file {self.path}"
        self._file_lock = threading.Lock()
        self._warned_mode: int | None = None

    def check(self) -> None:
        self._read()

    def names(self) -> list[str]:
        return sorted(self._read())

    def _fetch(self, name: str) -> str | None:
        value = self._read().get(name)
        if value is not None and not isinstance(value, str):
            raise SecretError(f"secret {name!r} in {self.path} is not a string")
        return value

    def _store(self, name: str, value: str) -> None:
        if self._named_by and not self.path.exists():
            self._read()  # the error naming the setting; the folder is not made either
        private_dir(self.path.parent)
        with self._file_lock, _folder_lock(self.path.parent):
            data = self._read()
            data[name] = value
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".secrets-", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    json.dump(data, handle, indent=2, sort_keys=True)
                    handle.write("\n")
                os.chmod(tmp, 0o600)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

    def _read(self) -> dict[str, object]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            if self._named_by:
                raise SecretStoreUnavailableError(
                    f"the local secrets file {self.path} named by {self._named_by} does not "
                    "exist; create it (a file holding {} will do) or correct the setting"
                ) from None
            return {}
        except OSError as exc:
            raise SecretStoreUnavailableError(
                f"cannot read the local secrets file {self.path}: {exc.strerror}"
            ) from None
        self._warn_if_open()
        try:
            data = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as exc:
            # The position only: the text around it may be a secret.
            raise SecretError(
                f"the local secrets file {self.path} is not valid JSON "
                f"(line {exc.lineno}, column {exc.colno}); fix or remove it"
            ) from None
        if not isinstance(data, dict):
            raise SecretError(
                f"the local secrets file {self.path} must hold a JSON object of name: value"
            )
        return data

    def _warn_if_open(self) -> None:
        """Warn (once per mode) when group or others may read the file: the file's name and
        mode only, never its content."""
        bits = open_to_others(self.path)
        if bits is None or bits == self._warned_mode:
            return
        self._warned_mode = bits
        logger.warning(
            "The local secrets file %s can be read or written by others than its owner "
            "(mode %04o); run 'chmod 600 %s'",
            self.path,
            bits,
            self.path,
        )
