"""Run reports end to end: the Clever sandbox over HTTP, SessionDb and the school databases on
SQLite and PostgreSQL, a real SMTP server on loopback (aiosmtpd, STARTTLS, AUTH) or the .eml
outbox; in-process runs and queued runs, a refused login, a server down, racing finishers."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import pytest

from cleversync.db.sessiondb.outbox import Outbox, Pending
from cleversync.orchestrator import ALERT_EVENT
from cleversync.queue import SyncMessage
from cleversync.runs import MAX_DEQUEUE
from cleversync.sandbox import Fault
from cleversync.secrets import names
from cleversync.services import Services
from cleversync.settings import Settings
from tests.notify.smtpserver import PASSWORD, SmtpServer, free_port, smtp_env
from tests.world import World

T = TypeVar("T")


class ListQueue:
    """The sync queue as a list (the Storage queue itself is tested in tests/queue)."""

    def __init__(self) -> None:
        self.messages: list[SyncMessage] = []

    def send(self, message: SyncMessage) -> None:
        self.messages.append(message)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


def services(world: World, server: SmtpServer | None = None, **env: str) -> Services:
    """Another instance over the same SessionDb, secrets and Clever."""
    settings = Settings.load({**world.env, **(server.env() if server else {}), **env})
    made = Services(
        settings,
        secret_store=world.secrets,
        redactor=world.redactor,
        smtp_context=server.client_context if server else None,
    )
    return made


def outbox_files(world: World) -> list[Path]:
    folder = Path(world.env["CleverSync__DataDir"]) / "outbox"
    return sorted(folder.glob("*.eml")) if folder.exists() else []


def read_eml(path: Path) -> EmailMessage:
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def text_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def kept(made: Services) -> list[Any]:
    return Outbox(made.checked_session_engine(), policy=made.settings.retry.database).pending()


def fail_school(world: World, index: int = 0) -> None:
    clever_id = world.schools[index].clever_school_id
    world.sandbox.faults.add(
        Fault("status", path=f"/v3.0/schools/{clever_id}/*", status=400, times=None)
    )


# --- on a laptop: .eml files ---------------------------------------------------------------


def test_a_failed_school_is_reported_in_an_eml_file(world: World) -> None:
    fail_school(world)
    run = world.sync()
    assert [s.status for s in run.schools] == ["Failed", "Success"]
    [path] = outbox_files(world)
    message = read_eml(path)
    assert message["Subject"] == "CleverSync: 1 school synced, 1 failed"
    text = text_of(message)
    assert f"school 1: {world.schools[0].name}" in text
    assert "cleversync sync --school-id 1" in text and "400" in text
    assert message.get_body(("html",)) is not None
    assert kept(world.services) == []  # written: nothing left to send


def test_on_decides_which_runs_are_reported(world: World) -> None:
    world.sync()  # On=failures (the default) and nothing failed
    assert outbox_files(world) == []
    world.sync(services(world, CleverSync__Notify__On="never"))
    assert outbox_files(world) == []
    world.sync(services(world, CleverSync__Notify__On="always"))
    [path] = outbox_files(world)
    assert read_eml(path)["Subject"] == "CleverSync: 2 schools synced"


def test_with_key_vault_and_no_smtp_host_nothing_is_written(world: World) -> None:
    made = services(world, CleverSync__KeyVault__Url="https://kv.vault.azure.net/")
    assert not made.notifier().enabled  # an app in Azure: no folder anyone reads


def test_the_alert_is_sent_at_once_with_the_report(world: World) -> None:
    fail_school(world)
    made = services(world, CleverSync__Monitoring__AlertAfterConsecutiveFailures="1")
    run = world.sync(made)
    assert run.alerts == [1]
    subjects = [read_eml(p)["Subject"] for p in outbox_files(world)]
    assert sorted(subjects) == [
        "CleverSync alert: school 1 (school-1-1) failed 1 syncs in a row",
        "CleverSync: 1 school synced, 1 failed",
    ]


def test_held_back_deletes_are_reported_with_the_command_that_lifts_the_guard(
    world: World,
) -> None:
    world.sync()
    clever_id = world.schools[0].clever_school_id
    students = world.sandbox.students(clever_id)
    for student in students[: len(students) * 6 // 10]:  # more than MaxDeletePercent (40)
        world.sandbox.remove_user(student["id"])
    run = world.sync(full=True)
    assert run.schools[0].status == "Partial"
    [path] = outbox_files(world)
    message = read_eml(path)
    assert message["Subject"] == "CleverSync: 1 school synced, 1 held back"
    text = text_of(message)
    assert "Held back (1):" in text and "held back deleting" in text
    assert "$ cleversync sync --school-id 1 --allow-mass-delete" in text


# --- over SMTP ------------------------------------------------------------------------------


def test_a_report_goes_over_starttls_with_a_login(
    world: World, smtp: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    world.secrets.set(names.NOTIFY_SMTP_PASSWORD, PASSWORD)
    fail_school(world, 1)
    with caplog.at_level(logging.DEBUG, logger="cleversync"):
        world.sync(services(world, smtp))
    [got] = smtp.received
    assert got.tls and got.authenticated
    assert got.recipients == ["ops@example.org", "it@example.org"]
    assert got.message["Subject"] == "CleverSync: 1 school synced, 1 failed"
    assert "cleversync sync --school-id 2" in text_of(got.message)
    assert PASSWORD not in caplog.text and PASSWORD not in got.message.as_string()
    assert (
        "Sent the email 'CleverSync: 1 school synced, 1 failed' to ops@example.org" in caplog.text
    )
    assert outbox_files(world) == []  # SMTP, not files


def test_a_refused_login_never_fails_the_sync_and_the_report_goes_next_time(
    world: World, smtp: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    world.secrets.set(names.NOTIFY_SMTP_PASSWORD, PASSWORD)
    smtp.handler.accept_password = "another-password"  # the server's password was rotated
    made = services(world, smtp, CleverSync__Notify__On="always")
    with caplog.at_level(logging.INFO, logger="cleversync"):
        first = world.sync(made)
    assert first.status == "Success"  # the sync itself is untouched
    assert smtp.received == []
    [waiting] = kept(made)
    assert waiting.attempts == 1 and "refused the login" in (waiting.last_error or "")
    assert (
        "not sent, kept for the next report" in caplog.text and "refused the login" in caplog.text
    )
    assert PASSWORD not in caplog.text and PASSWORD not in (waiting.last_error or "")
    smtp.handler.accept_password = PASSWORD  # fixed
    second = world.sync(made)
    assert [r.message["Subject"] for r in smtp.received] == ["CleverSync: 2 schools synced"] * 2
    bodies = [text_of(r.message) for r in smtp.received]
    assert first.correlation_id in bodies[0] and second.correlation_id in bodies[1]  # oldest first
    assert kept(made) == []


def test_a_server_that_is_down_never_fails_the_sync(world: World, smtp: SmtpServer) -> None:
    down = services(
        world,
        None,
        **smtp_env("127.0.0.1", free_port("127.0.0.1"), CleverSync__Notify__SmtpUser=""),
        CleverSync__Notify__On="always",
    )
    fail_school(world)
    run = world.sync(down)
    assert [s.status for s in run.schools] == ["Failed", "Success"]  # as without email
    [waiting] = kept(down)
    assert "connection refused" in (waiting.last_error or "")
    # The next report, from another instance whose server is up, sends the kept one first.
    world.secrets.set(names.NOTIFY_SMTP_PASSWORD, PASSWORD)
    world.sandbox.faults.clear()
    world.sync(services(world, smtp, CleverSync__Notify__On="always"))
    assert [r.message["Subject"] for r in smtp.received] == [
        "CleverSync: 1 school synced, 1 failed",
        "CleverSync: 2 schools synced",
    ]


def test_a_slow_server_holds_the_run_up_for_seconds_at_most(world: World, smtp: SmtpServer) -> None:
    world.secrets.set(names.NOTIFY_SMTP_PASSWORD, PASSWORD)
    made = services(
        world, smtp, CleverSync__Notify__On="always", CleverSync__Notify__TimeoutSeconds="2"
    )
    outbox = Outbox(made.checked_session_engine(), policy=made.settings.retry.database)
    for n in range(12):  # what earlier reports left
        outbox.add(Pending("report", f"kept {n}", _message(f"kept {n}")))
    smtp.handler.delay = 1.0  # each message takes half a timeout: none times out, even loaded
    began = time.monotonic()
    run = world.sync(made)
    took = time.monotonic() - began
    assert run.status == "Success"
    sent = [r.message["Subject"] for r in smtp.received]
    assert 2 <= len(sent) < 12 and sent == [f"kept {n}" for n in range(len(sent))]
    assert took < 20  # a hang guard; the count above shows the batch stopped after ~3 timeouts
    left = kept(made)
    assert len(left) == 13 - len(sent)  # the rest (and this run's report) wait, untried
    assert all(k.attempts == 0 for k in left)


def _message(subject: str) -> str:
    message = EmailMessage()
    message["Subject"] = subject
    message.set_content("kept")
    return message.as_string()


# --- queued runs ----------------------------------------------------------------------------


def _enqueue(made: Services, queue: ListQueue) -> int:
    made.use_sync_queue(queue)
    queued = made.queued_runs()
    return queued.enqueue_run(queued.orchestrator.targets(), trigger="timer").run_id


def test_a_queued_run_is_reported_once_when_its_last_school_finishes(world: World) -> None:
    fail_school(world)
    queue = ListQueue()
    run_id = _enqueue(world.services, queue)
    assert outbox_files(world) == []
    first, last = queue.messages
    world.services.queued_runs().process_message(first.to_json(), MAX_DEQUEUE)
    assert outbox_files(world) == []  # one school still queued
    world.services.queued_runs().process_message(last.to_json(), 1)
    [path] = outbox_files(world)
    message = read_eml(path)
    assert message["Subject"] == "CleverSync: 1 school synced, 1 failed"
    assert "(timer)" in text_of(message)
    assert "cleversync sync --school-id 1" in text_of(message)
    # A message delivered again finishes nothing, reports nothing.
    world.services.queued_runs().process_message(last.to_json(), 2)
    assert len(outbox_files(world)) == 1
    assert world.services.queued_runs().run_status(run_id)["status"] == "Failed"  # type: ignore[index]


def test_an_instance_killed_before_claiming_the_report_leaves_it_to_the_redelivery(
    world: World,
) -> None:
    """Killed after its last school's part was closed (the run finished) and before the
    report was claimed: the queue delivers that message again, and the report goes then."""
    fail_school(world)
    queue = ListQueue()
    run_id = _enqueue(world.services, queue)
    first, last = queue.messages
    queued = world.services.queued_runs()
    queued.process_message(first.to_json(), MAX_DEQUEUE)
    # What the killed instance committed: the last part closed, the run finished.
    assert queued.runs.start_school(run_id, last.school_id)
    assert queued.runs.finish_school(run_id, last.school_id, "Success") == (True, True)
    assert outbox_files(world) == []
    assert queued.process_message(last.to_json(), 2) == "duplicate"
    [path] = outbox_files(world)
    assert read_eml(path)["Subject"] == "CleverSync: 1 school synced, 1 failed"
    queued.process_message(last.to_json(), 3)  # and once only
    assert len(outbox_files(world)) == 1


@pytest.mark.parametrize("history", ["refuse", "purge"])
def test_a_school_removed_while_queued_lets_its_run_finish_and_be_reported(
    world: World, history: str
) -> None:
    """'school remove' of a school whose part of a queued run has not started: the run
    still ends (with its other schools) and is reported, once."""
    fail_school(world)
    queue = ListQueue()
    run_id = _enqueue(world.services, queue)
    first, last = queue.messages
    queued = world.services.queued_runs()
    queued.process_message(first.to_json(), MAX_DEQUEUE)
    world.services.registry.remove_school(last.school_id, history)
    queued.process_message(last.to_json(), 1)  # its message arrives all the same
    record = queued.runs.get(run_id, with_history=False)
    assert record is not None and record.finished_at is not None
    [path] = outbox_files(world)
    assert read_eml(path)["Subject"] == "CleverSync: 0 schools synced, 1 failed"
    queued.process_message(last.to_json(), 2)
    assert len(outbox_files(world)) == 1


def test_a_queued_schools_alert_is_sent_when_its_part_ends(world: World) -> None:
    fail_school(world)
    made = services(world, CleverSync__Monitoring__AlertAfterConsecutiveFailures="1")
    queue = ListQueue()
    _enqueue(made, queue)
    made.queued_runs().process_message(queue.messages[0].to_json(), MAX_DEQUEUE)
    [alert] = [read_eml(p) for p in outbox_files(world)]  # at once, before the run ends
    assert alert["Subject"] == "CleverSync alert: school 1 (school-1-1) failed 1 syncs in a row"
    made.queued_runs().process_message(queue.messages[1].to_json(), 1)
    assert len(outbox_files(world)) == 2


def test_two_instances_finishing_the_last_two_schools_at_once_send_one_report(
    world: World, smtp: SmtpServer
) -> None:
    world.secrets.set(names.NOTIFY_SMTP_PASSWORD, PASSWORD)
    instances = [services(world, smtp, CleverSync__Notify__On="always") for _ in range(2)]
    queue = ListQueue()
    _enqueue(instances[0], queue)
    instances[1].use_sync_queue(queue)
    results = _race(
        2, lambda i: instances[i].queued_runs().process_message(queue.messages[i].to_json(), 1)
    )
    assert results == ["done", "done"]
    assert [r.message["Subject"] for r in smtp.received] == ["CleverSync: 2 schools synced"]


def test_instances_racing_to_report_a_finished_run_send_it_once(
    world: World, smtp: SmtpServer
) -> None:
    world.secrets.set(names.NOTIFY_SMTP_PASSWORD, PASSWORD)
    instances = [services(world, smtp, CleverSync__Notify__On="always") for _ in range(3)]
    queue = ListQueue()
    run_id = _enqueue(instances[0], queue)
    runs = instances[0].queued_runs().runs
    for message in queue.messages:  # finished without a report (as if its finisher died)
        runs.finish_school(run_id, message.school_id, "Success")
    run = runs.get(run_id)
    assert run is not None
    claims = _race(3, lambda i: instances[i].notifier().queued_run_finished(run))
    assert sorted(claims) == [False, False, True]
    assert len(smtp.received) == 1


def _race(n: int, work: Callable[[int], T]) -> list[T]:
    barrier = threading.Barrier(n)
    results: dict[int, T] = {}
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    return [results[i] for i in range(n)]


def test_the_alert_event_is_still_logged(world: World, caplog: pytest.LogCaptureFixture) -> None:
    fail_school(world)
    made = services(world, CleverSync__Monitoring__AlertAfterConsecutiveFailures="1")
    with caplog.at_level(logging.ERROR, logger="cleversync"):
        world.sync(made)
    assert any(getattr(r, "EventName", None) == ALERT_EVENT for r in caplog.records)
