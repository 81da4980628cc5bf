"""What a report and an alert say, as plain data: the outcome in the subject, the schools that
need someone with their errors and the command to act, totals; escaped and redacted."""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage

from cleversync.notify.message import (
    Alert,
    EntityLine,
    Envelope,
    RunReport,
    SchoolLine,
    alert_message,
    report_message,
    report_subject,
)
from cleversync.redaction import Redactor

AT = datetime(2026, 12, 2, 2, 5)
GUARD = (
    "held back deleting 40 of 100 active student rows (40 %, more than "
    "CleverSync__Sync__MaxDeletePercent=30 %); if Clever is right, force it with "
    "'cleversync sync --school-id 7 --allow-mass-delete' (HTTP: POST /api/sync?schoolId=7"
    "&allowMassDelete=true)"
)


def _ok(school_id: int, name: str = "Elm") -> SchoolLine:
    return SchoolLine(school_id, name, "Success", None, (EntityLine("Student", "Success", 3, 2),))


def _report(*schools: SchoolLine) -> RunReport:
    return RunReport("c0ffee", "timer", AT, 12, schools)


def _parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    page = message.get_body(("html",))
    assert text is not None and page is not None
    return text.get_content(), page.get_content()


def test_the_subject_says_the_outcome() -> None:
    schools = [_ok(n) for n in range(1, 99)]
    schools += [SchoolLine(99, "A", "Failed", "boom"), SchoolLine(100, "B", "Failed", "bang")]
    schools.append(
        SchoolLine(7, "C", "Partial", None, (EntityLine("Student", "Partial", message=GUARD),))
    )
    assert report_subject(_report(*schools)) == (
        "CleverSync: 98 schools synced, 2 failed, 1 held back"
    )
    assert report_subject(_report(_ok(1))) == "CleverSync: 1 school synced"
    skipped = SchoolLine(2, "D", "Skipped", "lease held")
    partial = SchoolLine(3, "E", "Partial", None, (EntityLine("Student", "Partial", failed=2),))
    assert report_subject(_report(_ok(1), skipped, partial)) == (
        "CleverSync: 1 school synced, 1 partial, 1 skipped"
    )


def test_the_report_lists_who_needs_someone_with_the_command_to_act() -> None:
    report = _report(
        _ok(1),
        SchoolLine(4, "Oak Middle", "Failed", "database unreachable: school-4.sqlite"),
        SchoolLine(
            7, "Pine High", "Partial", None, (EntityLine("Student", "Partial", 0, 5, 0, 0, GUARD),)
        ),
        SchoolLine(
            9,
            "Ash",
            "Partial",
            None,
            (EntityLine("Teacher", "Partial", failed=2, message="2 record(s) skipped"),),
        ),
    )
    envelope = Envelope("cs@example.org", ("ops@example.org",), "https://cs.example.org/admin")
    message = report_message(report, envelope, Redactor().redact, AT)
    text, page = _parts(message)
    assert message["To"] == "ops@example.org" and message["From"] == "cs@example.org"
    assert message["Subject"] == "CleverSync: 1 school synced, 1 failed, 1 held back, 1 partial"
    for part in (text, page):
        assert "database unreachable: school-4.sqlite" in part
        assert "cleversync sync --school-id 4" in part
        assert "cleversync sync --school-id 7 --allow-mass-delete" in part
        assert "cleversync history --school-id 9" in part
        assert "https://cs.example.org/admin" in part
    assert text.index("Failed (1)") < text.index("Held back (1)") < text.index("Partial (1)")
    assert "records inserted 3, updated 7, deleted 0, skipped 2" in text
    assert "school 1:" not in text  # a school that synced is only counted


def test_no_dashboard_link_without_the_setting() -> None:
    text, page = _parts(report_message(_report(_ok(1)), Envelope(), str, AT))
    assert "Dashboard" not in text and "<a " not in page


def test_a_hostile_school_name_and_error_are_escaped_in_html() -> None:
    name = '<script>alert("x")</script> & <b>Elm</b>'
    error = "<img src=x onerror=alert(1)> \"quoted\" & 'single'"
    message = report_message(_report(SchoolLine(3, name, "Failed", error)), Envelope(), str, AT)
    text, page = _parts(message)
    assert "<script>" not in page and "<img" not in page and "<b>Elm" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;Elm&lt;/b&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt; &quot;quoted&quot; &amp; &#x27;single&#x27;" in page
    assert name in text and error in text  # the plain part is plain text


def test_secrets_are_masked_everywhere_in_the_message() -> None:
    redactor = Redactor()
    redactor.register("s3cr3t-client-value")
    error = "token refused for s3cr3t-client-value; Password=hunter2xyz;"
    school = SchoolLine(3, "Elm", "Failed", error)
    message = report_message(_report(school), Envelope(), redactor.redact, AT)
    raw = message.as_string()
    text, page = _parts(message)
    for part in (raw, text, page):
        assert "s3cr3t-client-value" not in part and "hunter2xyz" not in part
    assert "token refused for ***" in text


def test_an_alert_names_the_school_and_its_streak_on_one_subject_line() -> None:
    alert = Alert(5, "Elm\r\nBcc: victim@example.org", 2, 3, "Clever said <no>", "abc", AT)
    message = alert_message(alert, Envelope(to=("ops@example.org",)), Redactor().redact)
    assert message["Subject"] == (
        "CleverSync alert: school 5 (Elm Bcc: victim@example.org) failed 3 syncs in a row"
    )
    assert message["Bcc"] is None
    text, page = _parts(message)
    assert "ConsecutiveSyncFailures" in text and "cleversync sync --school-id 5" in text
    assert "Clever said &lt;no&gt;" in page


def test_an_alert_survives_every_line_break_python_knows_in_a_name() -> None:
    """NEL, the line and paragraph separators and the file/group/record separators break a
    header line for the email package as CR and LF do: made spaces, the alert is composed."""
    for mark in ("\x85", "\u2028", "\u2029", "\x1c", "\x0b"):
        alert = Alert(5, f"Elm{mark}Bcc: victim@example.org", 2, 3, "error", "abc", AT)
        message = alert_message(alert, Envelope(to=("ops@example.org",)), Redactor().redact)
        assert message["Subject"] == (
            "CleverSync alert: school 5 (Elm Bcc: victim@example.org) failed 3 syncs in a row"
        )
        assert message["Bcc"] is None


def test_a_hostile_name_or_error_cannot_forge_a_command_line_in_the_plain_part() -> None:
    """A line break in a school name or an error would let it add a line that looks like the
    report's own '$ cleversync ...' advice (here: a mass delete): each stays on its line."""
    forged = "\n    $ cleversync sync --school-id 3 --allow-mass-delete"
    school = SchoolLine(3, f"Elm{forged}", "Failed", f"Clever said no{forged}")
    text, _ = _parts(report_message(_report(school), Envelope(), str, AT))
    lines = text.splitlines()
    assert not [line for line in lines if line.strip().startswith("$") and "mass" in line]
    assert "- school 3: Elm     $ cleversync sync --school-id 3 --allow-mass-delete" in lines
    alert = Alert(3, f"Elm{forged}", 2, 3, f"no{forged}", "abc", AT)
    text, _ = _parts(alert_message(alert, Envelope(), str))
    assert not [
        line for line in text.splitlines() if line.strip().startswith("$ ") and "mass" in line
    ]
