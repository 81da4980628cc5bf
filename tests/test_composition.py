"""The composition root: each Services owns its Redactor; no module holds one of its own."""

from __future__ import annotations

import importlib
import io
import json
import logging
import pkgutil
from pathlib import Path

import cleversync
from cleversync.redaction import Redactor
from cleversync.secrets import names
from cleversync.services import Services
from cleversync.settings import Settings
from cleversync.telemetry import RedactingFilter

SECRET_A = "first-installation-secret"
SECRET_B = "second-installation-secret"


def services_with(tmp_path: Path, name: str, secret: str) -> Services:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "secrets.json").write_text(json.dumps({names.client_secret("Lincoln"): secret}))
    return Services(Settings.load({"CleverSync__DataDir": str(folder)}))


def logged_through(services: Services, message: str) -> str:
    """What a handler redacting with ``services``' Redactor writes for ``message``."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RedactingFilter(services.redactor))
    logger = logging.getLogger("test.composition")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning(message)
    finally:
        logger.removeHandler(handler)
    return out.getvalue()


def test_each_services_redacts_the_secrets_it_read_and_only_those(tmp_path: Path) -> None:
    first = services_with(tmp_path, "a", SECRET_A)
    second = services_with(tmp_path, "b", SECRET_B)
    assert first.redactor is not second.redactor
    assert first.secret_store.require(names.client_secret("Lincoln")) == SECRET_A
    assert second.secret_store.require(names.client_secret("Lincoln")) == SECRET_B

    text = f"token request with {SECRET_A} and {SECRET_B}"
    first_log, second_log = logged_through(first, text), logged_through(second, text)
    assert SECRET_A not in first_log and SECRET_B in first_log
    assert SECRET_B not in second_log and SECRET_A in second_log


def test_no_module_holds_a_redactor_of_its_own() -> None:
    """Every Redactor is built by a composition root and passed down: a module-level one
    would be shared by every root of the process and hide secrets of one from another."""
    found = []
    for module in pkgutil.walk_packages(cleversync.__path__, "cleversync."):
        if module.name.startswith(("cleversync.sandbox", "cleversync.__main__")):
            continue
        imported = importlib.import_module(module.name)
        found += [
            f"{module.name}.{name}"
            for name, value in vars(imported).items()
            if isinstance(value, Redactor)
        ]
    assert found == []
