"""
SMTP TLS Reporting (RFC 8460) for the sending side: every TLS outcome
with a DANE or MTA-STS policy is counted per day and policy, and once a
day the counts of the finished day go, as a gzipped JSON report (4.4) in
a C{multipart/report; report-type="tlsrpt"} message (5.3), to the
C{mailto:} addresses of each policy domain's C{_smtp._tls} TXT record
(3).  C{https:} reporting URIs are not used: the suite sends mail, not
HTTP.

The counts live in memory and in C{<state_directory>/tlsrpt.json}, written
in a thread a minute after a change and at shutdown: a crash loses at most
that minute, which RFC 8460 allows (reports are best effort).
"""

from __future__ import annotations

import email.utils
import gzip
import json
import re
import time
from dataclasses import dataclass
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

from twisted.internet import defer
from twisted.logger import Logger
from twisted.names import dns

__all__ = ["PolicyKey", "SessionRecorder", "buildReport", "reportMessage", "parseRUA", "Reporter"]

log = Logger(namespace="twisted_maillab.tlspolicy")

DAY = 86400


@dataclass(frozen=True)
class PolicyKey:
    """
    RFC 8460 4.4 C{policy}: C{policy-domain}, C{policy-type} (C{sts},
    C{tlsa}, C{no-policy-found}), C{policy-string} and C{mx-host}.
    """

    domain: str
    type: str
    strings: tuple
    mxHost: str | None


class _Counts:
    def __init__(self):
        self.success = 0
        self.failure = 0
        # (result-type, receiving-mx-hostname, receiving-ip) -> count
        self.details: dict[tuple, int] = {}


class SessionRecorder:
    """
    Session outcomes by UTC day and policy.

    The counts are kept in C{path} (JSON), written in the runner's thread
    pool at most every C{saveDelay} seconds after a change and when the
    service stops, and read back at start, so a restart keeps the day's
    counts.

    @ivar clock: gives the day of an outcome; runs the save timer.
    """

    def __init__(self, clock, path=None, runner=None, saveDelay: float = 60.0):
        self.clock = clock
        self.path = path
        self.runner = runner
        self.saveDelay = saveDelay
        self.days: dict[int, dict[PolicyKey, _Counts]] = {}
        self._saveTimer = None
        # One write at a time: two would share the temporary file.
        self._writing = defer.DeferredLock()

    def record(self, key: PolicyKey, resultType: str | None, host: str | None, address: str | None) -> None:
        """
        One session: a success when C{resultType} is L{None}, else a
        failure of that RFC 8460 4.3 result type.
        """
        day = int(self.clock.seconds() // DAY)
        counts = self.days.setdefault(day, {}).setdefault(key, _Counts())
        if resultType is None:
            counts.success += 1
        else:
            counts.failure += 1
            detail = (resultType, host, address)
            counts.details[detail] = counts.details.get(detail, 0) + 1
        self._changed()

    def finishedDays(self) -> list[int]:
        today = int(self.clock.seconds() // DAY)
        return sorted(day for day in self.days if day < today)

    def take(self, day: int) -> dict[str, dict[PolicyKey, _Counts]]:
        """
        Remove one day's counts, by policy domain.
        """
        byDomain: dict[str, dict[PolicyKey, _Counts]] = {}
        for key, counts in self.days.pop(day, {}).items():
            byDomain.setdefault(key.domain, {})[key] = counts
        self._changed()
        return byDomain

    # -- the state file ------------------------------------------------------

    def _changed(self) -> None:
        if self.path is None or (self._saveTimer is not None and self._saveTimer.active()):
            return
        self._saveTimer = self.clock.callLater(self.saveDelay, self.save)

    def toJSON(self) -> dict:
        return {
            "days": {
                str(day): [
                    {
                        "domain": key.domain,
                        "type": key.type,
                        "strings": list(key.strings),
                        "mx-host": key.mxHost,
                        "success": counts.success,
                        "failure": counts.failure,
                        "details": [[*detail, n] for detail, n in counts.details.items()],
                    }
                    for key, counts in policies.items()
                ]
                for day, policies in self.days.items()
            }
        }

    def merge(self, data: dict) -> None:
        """
        Add counts read back from the state file.
        """
        for day, entries in data.get("days", {}).items():
            for entry in entries:
                key = PolicyKey(entry["domain"], entry["type"], tuple(entry["strings"]), entry["mx-host"])
                counts = self.days.setdefault(int(day), {}).setdefault(key, _Counts())
                counts.success += int(entry["success"])
                counts.failure += int(entry["failure"])
                for resultType, host, address, n in entry["details"]:
                    detail = (resultType, host, address)
                    counts.details[detail] = counts.details.get(detail, 0) + int(n)

    def save(self) -> defer.Deferred:
        """
        Write the counts now (in the runner's pool).
        """
        if self._saveTimer is not None and self._saveTimer.active():
            self._saveTimer.cancel()
        self._saveTimer = None
        if self.path is None:
            return defer.succeed(None)
        from twisted_maillab.atomicwrite import replaceFile

        data = json.dumps(self.toJSON()).encode("utf-8")

        def write():
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            replaceFile(self.path, data, mode=0o600)

        d = self._writing.run(self.runner, write)
        d.addErrback(lambda f: log.failure("TLS-RPT counts not saved to {path}", f, path=str(self.path)))
        return d

    async def load(self) -> None:
        """
        Read the state file back (a missing or unreadable one is no counts).
        """
        if self.path is None:
            return

        def read():
            try:
                return json.loads(self.path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                return None

        try:
            data = await self.runner(read)
            if data is not None:
                self.merge(data)
        except Exception:
            log.failure("TLS-RPT counts in {path} not readable; starting from none", path=str(self.path))


def buildReport(organization: str, contact: str, reportId: str, day: int, policies: dict) -> dict:
    """
    The RFC 8460 4.4 JSON object for one policy domain and one day.
    """

    def stamp(seconds: int) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))

    out = []
    for key, counts in sorted(policies.items(), key=lambda item: (item[0].type, item[0].strings)):
        policy = {"policy-type": key.type, "policy-domain": key.domain}
        if key.strings:
            policy["policy-string"] = list(key.strings)
        if key.mxHost:
            policy["mx-host"] = key.mxHost
        entry = {
            "policy": policy,
            "summary": {
                "total-successful-session-count": counts.success,
                "total-failure-session-count": counts.failure,
            },
        }
        details = []
        for (resultType, host, address), count in sorted(counts.details.items(), key=lambda i: tuple(str(x) for x in i[0])):
            detail = {"result-type": resultType, "failed-session-count": count}
            if host:
                detail["receiving-mx-hostname"] = host
            if address:
                detail["receiving-ip"] = address
            details.append(detail)
        if details:
            entry["failure-details"] = details
        out.append(entry)
    return {
        "organization-name": organization,
        "date-range": {"start-datetime": stamp(day * DAY), "end-datetime": stamp((day + 1) * DAY - 1)},
        "contact-info": contact,
        "report-id": reportId,
        "policies": out,
    }


def reportMessage(report: dict, *, submitter: str, sender: str, recipients: list[str], now: float) -> bytes:
    """
    RFC 8460 5.3: the report gzipped as C{application/tlsrpt+gzip} in a
    C{multipart/report; report-type="tlsrpt"} message, with the
    C{TLS-Report-Domain} and C{TLS-Report-Submitter} headers and the file
    name C{submitter!policy-domain!begin!end!id.json.gz}.
    """
    domain = report["policies"][0]["policy"]["policy-domain"] if report["policies"] else ""
    start = _epoch(report["date-range"]["start-datetime"])
    end = _epoch(report["date-range"]["end-datetime"])
    message = MIMEMultipart("report", report_type="tlsrpt")
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = email.utils.formatdate(now)
    message["Message-ID"] = email.utils.make_msgid("tlsrpt", domain=submitter)
    message["Subject"] = f"Report Domain: {domain} Submitter: {submitter} Report-ID: <{report['report-id']}>"
    message["TLS-Report-Domain"] = domain
    message["TLS-Report-Submitter"] = submitter
    message.attach(
        MIMEText(
            f"This is an aggregate TLS report from {submitter} for {domain}"
            f" ({report['date-range']['start-datetime']} to {report['date-range']['end-datetime']}).\n"
        )
    )
    data = gzip.compress(json.dumps(report, indent=1).encode("utf-8"), mtime=0)
    name = f"{submitter}!{domain}!{start}!{end}!{report['report-id'].split('@')[0]}.json.gz"
    attachment = MIMEApplication(data, "tlsrpt+gzip")
    attachment.add_header("Content-Disposition", "attachment", filename=name)
    message.attach(attachment)
    return message.as_bytes().replace(b"\r\n", b"\n")


def _epoch(stamp: str) -> int:
    import calendar

    return calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))


_MAILTO = re.compile(r"mailto:([^,;\s!]+@[^,;\s!]+)", re.I)


def parseRUA(texts: list[str]) -> list[str]:
    """
    The C{mailto:} addresses of a C{_smtp._tls} TXT record (RFC 8460 3):
    exactly one record starting with C{v=TLSRPTv1}.
    """
    found = [t for t in texts if t.startswith("v=TLSRPTv1")]
    if len(found) != 1:
        return []
    for part in found[0].split(";"):
        key, sep, value = part.strip().partition("=")
        if key.strip() == "rua" and sep:
            from urllib.parse import unquote

            return [unquote(m.group(1)) for uri in value.split(",") if (m := _MAILTO.fullmatch(uri.strip()))]
    return []


class Reporter:
    """
    Sends the finished days' reports once a day (RFC 8460 4: the report
    covers a UTC day and is sent after it ends).

    @param send: C{send(sender, recipients, messageBytes) -> Deferred},
        queueing a message for delivery.
    @param clock: an C{IReactorTime}; the timer runs on it.
    """

    def __init__(self, recorder: SessionRecorder, resolver, send, clock, *, submitter: str, sender: str, contact: str):
        self.recorder = recorder
        self.resolver = resolver
        self.send = send
        self.clock = clock
        self.submitter = submitter
        self.sender = sender
        self.contact = contact
        self._timer = None
        self._serial = 0
        # The last timer run's Deferred (tests wait on it).
        self.lastRun = defer.succeed(None)

    def start(self) -> defer.Deferred:
        """
        Read the saved counts and arm the daily timer.
        """
        self._arm()
        return defer.ensureDeferred(self.recorder.load())

    def stop(self) -> defer.Deferred:
        """
        Stop the timer and save the counts.
        """
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        return self.recorder.save()

    def _arm(self) -> None:
        now = self.clock.seconds()
        # Shortly after midnight UTC, when the day being reported is over.
        delay = (int(now // DAY) + 1) * DAY + 300 - now
        self._timer = self.clock.callLater(delay, self._fire)

    def _fire(self):
        d = defer.ensureDeferred(self.sendFinished())
        d.addErrback(lambda f: log.failure("TLS-RPT reports not sent", f))
        d.addBoth(lambda _: self._arm())
        self.lastRun = d
        return d

    async def rua(self, domain: str) -> list[str]:
        try:
            answers, _, _ = await self.resolver.lookupText(f"_smtp._tls.{domain}")
        except Exception:
            return []
        texts = [b"".join(rr.payload.data).decode("utf-8", "replace") for rr in answers if rr.type == dns.TXT]
        return parseRUA(texts)

    async def sendFinished(self) -> int:
        """
        Report every finished day to every policy domain that asks.

        @return: how many reports were queued.
        """
        sent = 0
        for day in self.recorder.finishedDays():
            for domain, policies in self.recorder.take(day).items():
                recipients = await self.rua(domain)
                if not recipients:
                    continue
                self._serial += 1
                reportId = f"{time.strftime('%Y%m%d', time.gmtime(day * DAY))}.{self._serial}.{domain}@{self.submitter}"
                report = buildReport(self.submitter, self.contact, reportId, day, policies)
                data = reportMessage(
                    report, submitter=self.submitter, sender=self.sender, recipients=recipients, now=self.clock.seconds()
                )
                await self.send(self.sender, recipients, data)
                log.info(
                    "TLS-RPT report {reportId} for {domain} queued to {to}",
                    reportId=reportId,
                    domain=domain,
                    to=", ".join(recipients),
                )
                sent += 1
        return sent
