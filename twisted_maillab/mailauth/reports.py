"""
DMARC aggregate reports (RFC 7489 7.2 and appendix C): reading the XML
other domains send to our C{rua=} mailbox, from files (C{.xml},
C{.xml.gz}, C{.gz}, C{.zip}) or from the attachments of the messages of
a Maildir folder, and summarizing them.

The XML is parsed with the standard library's C{ElementTree}, which
refuses external entities; sizes are bounded (a report is rarely more
than a few hundred kilobytes; a compressed one is not inflated past
L{XML_LIMIT}).
"""

from __future__ import annotations

import gzip
import io
import zipfile
from dataclasses import dataclass, field
from email import message_from_binary_file, policy
from pathlib import Path
from xml.etree import ElementTree

__all__ = ["Report", "Record", "parseReport", "reportsIn", "XML_LIMIT"]

XML_LIMIT = 32 * 1024 * 1024


@dataclass
class Record:
    source: str
    count: int
    disposition: str
    dkim: str
    spf: str
    headerFrom: str


@dataclass
class Report:
    org: str
    reportId: str
    begin: int
    end: int
    domain: str
    policy: str
    records: list = field(default_factory=list)
    origin: str = ""

    def total(self) -> int:
        return sum(r.count for r in self.records)


def _text(element, path: str, default: str = "") -> str:
    found = element.find(path)
    return (found.text or "").strip() if found is not None and found.text else default


def parseReport(xml: bytes, origin: str = "") -> Report:
    """
    One aggregate report.

    @raise ValueError: not an aggregate report.
    """
    # No DTD, so no entity expansion ("billion laughs"): reports have none.
    upper = xml.upper()
    if b"<!ENTITY" in upper or b"<!DOCTYPE" in upper:
        raise ValueError("a DTD in a report is refused")
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as e:
        raise ValueError(f"not XML: {e}") from None
    if root.tag.split("}")[-1] != "feedback":
        raise ValueError(f"not a DMARC aggregate report (root element {root.tag!r})")
    # Namespaced (DMARCbis) or not: match local names.
    for element in root.iter():
        element.tag = element.tag.split("}")[-1]
    try:
        report = Report(
            org=_text(root, "report_metadata/org_name"),
            reportId=_text(root, "report_metadata/report_id"),
            begin=int(_text(root, "report_metadata/date_range/begin", "0")),
            end=int(_text(root, "report_metadata/date_range/end", "0")),
            domain=_text(root, "policy_published/domain"),
            policy=_text(root, "policy_published/p"),
            origin=origin,
        )
        for record in root.findall("record"):
            report.records.append(
                Record(
                    source=_text(record, "row/source_ip"),
                    count=int(_text(record, "row/count", "0")),
                    disposition=_text(record, "row/policy_evaluated/disposition"),
                    dkim=_text(record, "row/policy_evaluated/dkim"),
                    spf=_text(record, "row/policy_evaluated/spf"),
                    headerFrom=_text(record, "identifiers/header_from"),
                )
            )
    except ValueError as e:
        raise ValueError(f"bad number in report: {e}") from None
    return report


def _inflate(name: str, data: bytes) -> list[bytes]:
    lower = name.lower()
    if lower.endswith(".zip") or data[:4] == b"PK\x03\x04":
        out = []
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for info in archive.infolist():
                if info.file_size > XML_LIMIT:
                    raise ValueError(f"{info.filename}: larger than {XML_LIMIT} octets")
                out.append(archive.read(info))
        return out
    if lower.endswith(".gz") or data[:2] == b"\x1f\x8b":
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
            xml = f.read(XML_LIMIT + 1)
        if len(xml) > XML_LIMIT:
            raise ValueError(f"inflates past {XML_LIMIT} octets")
        return [xml]
    return [data]


def _fromMessage(path: Path) -> list[tuple[str, bytes]]:
    with open(path, "rb") as f:
        message = message_from_binary_file(f, policy=policy.default)
    found = []
    for part in message.walk():
        if part.is_multipart():
            continue
        name = part.get_filename() or ""
        ctype = part.get_content_type()
        if name.lower().endswith((".xml", ".gz", ".zip")) or ctype in (
            "application/zip",
            "application/gzip",
            "application/x-gzip",
            "application/xml",
            "text/xml",
        ):
            payload = part.get_payload(decode=True)
            if payload:
                found.append((name or ctype, payload))
    return found


def reportsIn(paths) -> tuple[list[Report], list[str]]:
    """
    Every report in C{paths}: report files, or Maildir folders whose
    messages carry reports as attachments.

    @return: the reports and one line per problem (a file that is not a
        report is named, never fatal).
    """
    reports, problems = [], []
    for given in paths:
        path = Path(given)
        sources: list[tuple[str, bytes]] = []
        try:
            if path.is_dir():
                files = [p for sub in ("cur", "new") for p in sorted((path / sub).glob("*"))] if (path / "cur").is_dir() else sorted(path.iterdir())
                for message in files:
                    if message.is_file():
                        try:
                            sources += [(f"{message}: {name}", data) for name, data in _fromMessage(message)]
                        except (OSError, ValueError) as e:
                            problems.append(f"{message}: {e}")
            else:
                with open(path, "rb") as f:
                    data = f.read(XML_LIMIT + 1)
                if data.lstrip()[:5].lower() in (b"<?xml", b"<feed"):
                    sources.append((str(path), data))
                elif data[:2] == b"\x1f\x8b" or data[:4] == b"PK\x03\x04":
                    sources.append((str(path), data))
                else:
                    sources += [(f"{path}: {name}", d) for name, d in _fromMessage(path)]
        except OSError as e:
            problems.append(f"{path}: {e.strerror or e}")
            continue
        for name, data in sources:
            try:
                for xml in _inflate(name, data):
                    reports.append(parseReport(xml, name))
            except (ValueError, zipfile.BadZipFile, OSError, EOFError) as e:
                problems.append(f"{name}: {e}")
    return reports, problems
