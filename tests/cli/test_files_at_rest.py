"""Student data at rest: the DataDir and the SQLite files are the owner's alone, whatever
the umask; a secrets file others can read is warned about."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cleversync.cli import main


@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_fresh_data_dir_and_its_databases_are_private_under_umask_000(
    open_umask: None, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch
) -> None:
    data_dir = tmp_path / "nested" / "data"
    monkeypatch.setenv("CleverSync__DataDir", str(data_dir))
    assert run(capsys, "db", "upgrade")[0] == 0
    district = ["--name", "D", "--clever-id", "5b2ad81a709e300001e2cd7a", "--prefix", "Demo"]
    assert run(capsys, "district", "add", *district)[0] == 0
    school = ["--district-id", "1", "--clever-id", "s1", "--name", "S", "--prefix", "S"]
    assert run(capsys, "school", "add", *school)[0] == 0
    code, _, err = run(capsys, "db", "upgrade", "--school-id", "1")
    assert code == 0, err
    assert mode(data_dir) == 0o700
    files = sorted(p.name for p in data_dir.iterdir())
    assert {"sessiondb.sqlite", "school-S.sqlite", "secrets.json"} <= set(files)
    for path in data_dir.iterdir():  # -wal and -shm files too
        assert mode(path) == 0o600, (path.name, oct(mode(path)))
    assert "secrets" not in err.lower()  # nothing to warn about


def test_a_secrets_file_others_can_read_is_warned_about_by_name_only(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data_dir = Path(os.environ["CleverSync__DataDir"])
    assert run(capsys, "db", "upgrade")[0] == 0
    secrets = data_dir / "secrets.json"
    stored = json.loads(secrets.read_text())
    stored["CleverSyncSOS--Clever--ClientSecret"] = "very-secret-value-77"
    secrets.write_text(json.dumps(stored))
    secrets.chmod(0o644)
    code, out, err = run(capsys, "district", "list")
    assert code == 0
    assert str(secrets) in err and "0644" in err and "chmod 600" in err
    assert "very-secret-value-77" not in out + err
    assert "sqlite" not in err  # no content of the file either
    secrets.chmod(0o600)
    code, out, err = run(capsys, "district", "list")
    assert code == 0 and str(secrets) not in err
