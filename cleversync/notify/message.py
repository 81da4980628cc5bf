"""What a run report and an alert say: a plain-text and an HTML part, built from plain data.

Pure: no I/O. Every value that comes from outside (school names, errors) is passed through the
redactor and, in the HTML part, escaped; none reaches a header unless stripped of control
characters first.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from cleversync.vocabulary import RunStatus

Redact = Callable[[str], str]

FAILED = "failed"
HELD_BACK = "held back"
PARTIAL = "partial"
SKIPPED = "skipped"
SYNCED = "synced"
# The order a report lists its schools in: what needs an operator first.
CATEGORIES = (FAILED, HELD_BACK, PARTIAL, SKIPPED, SYNCED)
NEEDS_ATTENTION = (FAILED, HELD_BACK, PARTIAL)
# The mass-delete guard's message (sync/plan.py) names the command that lifts it.
HELD_BACK_MARK = "--allow-mass-delete"
DEFAULT_FROM = "CleverSync <cleversync@localhost>"
MSGID_DOMAIN = "cleversync.local"  # make_msgid would otherwise ask DNS for this host's name

# C0, DEL and C1 controls and the Unicode line and paragraph separators: every character
# str.splitlines (and so the email package) takes for a line break, and the other controls.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


@dataclass(frozen=True)
class EntityLine:
    entity: str
    status: str
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    failed: int = 0
    message: str | None = None


@dataclass(frozen=True)
class SchoolLine:
    school_id: int
    name: str
    status: str  # Success | Partial | Failed | Skipped
    error: str | None = None
    entities: tuple[EntityLine, ...] = ()

    @property
    def held_back(self) -> bool:
        return any(e.message and HELD_BACK_MARK in e.message for e in self.entities) or bool(
            self.error and HELD_BACK_MARK in self.error and self.status == RunStatus.PARTIAL
        )

    @property
    def category(self) -> str:
        if self.status == RunStatus.FAILED:
            return FAILED
        if self.status == RunStatus.PARTIAL:
            return HELD_BACK if self.held_back else PARTIAL
        if self.status == RunStatus.SKIPPED:
            return SKIPPED
        return SYNCED

    def problems(self) -> list[str]:
        """What went wrong, each once: the school's error, then its entities' messages."""
        seen: list[str] = []
        for text in [self.error, *(e.message for e in self.entities if e.status != "Success")]:
            if text and text not in seen:
                seen.append(text)
        return seen

    def actions(self) -> list[str]:
        """The commands that act on it."""
        sid = self.school_id
        if self.category == FAILED:
            return [f"cleversync sync --school-id {sid}", f"cleversync history --school-id {sid}"]
        if self.category == HELD_BACK:
            return [
                f"cleversync history --school-id {sid}",
                f"cleversync sync --school-id {sid} --allow-mass-delete",
            ]
        if self.category == PARTIAL:
            return [f"cleversync history --school-id {sid}"]
        return []


@dataclass(frozen=True)
class RunReport:
    correlation_id: str
    trigger: str
    finished_at: datetime
    run_id: int | None = None
    schools: tuple[SchoolLine, ...] = ()

    def count(self, category: str) -> int:
        return sum(1 for s in self.schools if s.category == category)

    @property
    def needs_attention(self) -> bool:
        return any(s.category in NEEDS_ATTENTION for s in self.schools)

    def totals(self) -> dict[str, int]:
        entities = [e for s in self.schools for e in s.entities]
        return {
            "inserted": sum(e.inserted for e in entities),
            "updated": sum(e.updated for e in entities),
            "deleted": sum(e.deleted for e in entities),
            "failed": sum(e.failed for e in entities),
        }


@dataclass(frozen=True)
class Alert:
    """ConsecutiveSyncFailures: a school's failed runs in a row reached the threshold."""

    school_id: int
    name: str
    district_id: int
    failures: int
    error: str | None
    correlation_id: str
    at: datetime


@dataclass(frozen=True)
class Envelope:
    """Who a message is from and to, and where an operator acts."""

    sender: str = ""
    to: Sequence[str] = field(default_factory=tuple)
    dashboard_url: str = ""


def one_line(text: str) -> str:
    """Safe in a header: control characters and line breaks (CR, LF, NEL, U+2028...) become
    spaces."""
    return _CONTROL.sub(" ", text).strip()


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def report_subject(report: RunReport) -> str:
    """'CleverSync: 98 schools synced, 2 failed, 1 held back' (zero counts left out)."""
    if not report.schools:
        return "CleverSync: no school to sync"
    parts = [f"{_plural(report.count(SYNCED), 'school')} synced"]
    parts += [
        f"{report.count(c)} {c}" for c in (FAILED, HELD_BACK, PARTIAL, SKIPPED) if report.count(c)
    ]
    return "CleverSync: " + ", ".join(parts)


def alert_subject(alert: Alert, redact: Redact) -> str:
    name = one_line(redact(alert.name))
    return (
        f"CleverSync alert: school {alert.school_id} ({name}) failed "
        f"{alert.failures} syncs in a row"
    )


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")


def report_text(report: RunReport, envelope: Envelope, redact: Redact) -> str:
    def t(text: str) -> str:  # one line each: no value can forge a line of advice
        return one_line(redact(text))

    lines = [report_subject(report), ""]
    lines.append(
        f"Run {report.correlation_id} ({report.trigger}) finished {_when(report.finished_at)}."
    )
    for category in NEEDS_ATTENTION:
        schools = [s for s in report.schools if s.category == category]
        if not schools:
            continue
        lines += ["", f"{category.capitalize()} ({len(schools)}):"]
        for school in schools:
            lines.append(f"- school {school.school_id}: {t(school.name)}")
            lines += [f"    {t(problem)}" for problem in school.problems()]
            lines += [f"    $ {action}" for action in school.actions()]
    skipped = [s for s in report.schools if s.category == SKIPPED]
    if skipped:
        lines += ["", f"Skipped ({len(skipped)}):"]
        for school in skipped:
            reason = f": {t(school.error)}" if school.error else ""
            lines.append(f"- school {school.school_id}: {t(school.name)}{reason}")
    lines += ["", "Totals:"]
    lines += [f"  {category}: {report.count(category)}" for category in CATEGORIES]
    totals = report.totals()
    lines.append(
        "  records inserted {inserted}, updated {updated}, deleted {deleted}, "
        "skipped {failed}".format(**totals)
    )
    if envelope.dashboard_url:
        lines += ["", f"Dashboard: {envelope.dashboard_url}"]
    lines += ["", "Sent by CleverSync (CleverSync__Notify__On decides which runs are reported)."]
    return "\n".join(lines) + "\n"


def report_html(report: RunReport, envelope: Envelope, redact: Redact) -> str:
    def e(text: str) -> str:
        return html.escape(text, quote=True)

    out = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8"></head><body style="font-family: sans-serif">',
        f"<h2>{e(report_subject(report))}</h2>",
        f"<p>Run <code>{e(report.correlation_id)}</code> ({e(report.trigger)}) finished "
        f"{e(_when(report.finished_at))}.</p>",
    ]
    for category in NEEDS_ATTENTION:
        schools = [s for s in report.schools if s.category == category]
        if not schools:
            continue
        out.append(f"<h3>{e(category.capitalize())} ({len(schools)})</h3><ul>")
        for school in schools:
            out.append(f"<li><strong>school {school.school_id}: {e(redact(school.name))}</strong>")
            out += [f"<br>{e(redact(problem))}" for problem in school.problems()]
            out += [f"<br><code>{e(action)}</code>" for action in school.actions()]
            out.append("</li>")
        out.append("</ul>")
    skipped = [s for s in report.schools if s.category == SKIPPED]
    if skipped:
        out.append(f"<h3>Skipped ({len(skipped)})</h3><ul>")
        for school in skipped:
            reason = f": {e(redact(school.error))}" if school.error else ""
            out.append(f"<li>school {school.school_id}: {e(redact(school.name))}{reason}</li>")
        out.append("</ul>")
    out.append("<h3>Totals</h3><table>")
    out += [
        f"<tr><td>{e(category)}</td><td>{report.count(category)}</td></tr>"
        for category in CATEGORIES
    ]
    for key, value in report.totals().items():
        label = "records skipped" if key == "failed" else f"records {key}"
        out.append(f"<tr><td>{e(label)}</td><td>{value}</td></tr>")
    out.append("</table>")
    if envelope.dashboard_url:
        url = e(envelope.dashboard_url)
        out.append(f'<p><a href="{url}">Open the dashboard</a></p>')
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def alert_text(alert: Alert, envelope: Envelope, redact: Redact) -> str:
    name = one_line(redact(alert.name))  # one line: no value can forge a line of advice
    lines = [
        alert_subject(alert, redact),
        "",
        f"School {alert.school_id} ({name}, district {alert.district_id}) has "
        f"failed {alert.failures} syncs in a row (ConsecutiveSyncFailures), "
        f"as of {_when(alert.at)}.",
        f"Last error: {one_line(redact(alert.error or 'unknown'))}",
        f"Run: {alert.correlation_id}",
        "",
        f"  $ cleversync history --school-id {alert.school_id}",
        f"  $ cleversync sync --school-id {alert.school_id}",
    ]
    if envelope.dashboard_url:
        lines += ["", f"Dashboard: {envelope.dashboard_url}"]
    return "\n".join(lines) + "\n"


def alert_html(alert: Alert, envelope: Envelope, redact: Redact) -> str:
    def e(text: str) -> str:
        return html.escape(text, quote=True)

    out = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8"></head><body style="font-family: sans-serif">',
        f"<h2>{e(alert_subject(alert, redact))}</h2>",
        f"<p>School {alert.school_id} ({e(redact(alert.name))}, district {alert.district_id}) "
        f"has failed {alert.failures} syncs in a row (ConsecutiveSyncFailures), as of "
        f"{e(_when(alert.at))}.</p>",
        f"<p>Last error: {e(redact(alert.error or 'unknown'))}</p>",
        f"<p>Run <code>{e(alert.correlation_id)}</code></p>",
        f"<p><code>cleversync history --school-id {alert.school_id}</code><br>"
        f"<code>cleversync sync --school-id {alert.school_id}</code></p>",
    ]
    if envelope.dashboard_url:
        out.append(f'<p><a href="{e(envelope.dashboard_url)}">Open the dashboard</a></p>')
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def compose(
    subject: str, text: str, body_html: str, envelope: Envelope, at: datetime
) -> EmailMessage:
    """One message with a plain-text and an HTML alternative."""
    message = EmailMessage()
    message["Subject"] = one_line(subject)
    message["From"] = envelope.sender or DEFAULT_FROM
    if envelope.to:
        message["To"] = ", ".join(envelope.to)
    message["Date"] = format_datetime(at if at.tzinfo else at.replace(tzinfo=UTC), usegmt=True)
    message["Message-ID"] = make_msgid("cleversync", domain=MSGID_DOMAIN)
    message.set_content(text)
    message.add_alternative(body_html, subtype="html")
    return message


def report_message(
    report: RunReport, envelope: Envelope, redact: Redact, at: datetime
) -> EmailMessage:
    return compose(
        report_subject(report),
        report_text(report, envelope, redact),
        report_html(report, envelope, redact),
        envelope,
        at,
    )


def alert_message(alert: Alert, envelope: Envelope, redact: Redact) -> EmailMessage:
    return compose(
        alert_subject(alert, redact),
        alert_text(alert, envelope, redact),
        alert_html(alert, envelope, redact),
        envelope,
        alert.at,
    )
