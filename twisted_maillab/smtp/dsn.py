"""
RFC 3464 delivery status notifications: the report the queue sends to a
sender for failed or relayed recipients, and the local delivery for
recipients delivered with NOTIFY=SUCCESS.
"""

from __future__ import annotations

from datetime import datetime, timezone
from email.utils import format_datetime, make_msgid

__all__ = ["deliveryReport"]


_SUBJECTS = {
    "failed": "Undelivered Mail Returned to Sender",
    "delivered": "Successful Mail Delivery Report",
    "relayed": "Successful Mail Delivery Report",
}
_TEXTS = {
    "failed": "Your message could not be delivered to one or more recipients:",
    "delivered": "Your message was delivered to the following recipients:",
    "relayed": "Your message was relayed to the following recipients; their mail "
    "system may not send a further notice:",
}


def deliveryReport(
    hostname: str,
    now: float,
    queueId: str,
    sender: str,
    envid: str | None,
    arrival: float,
    entries: list,
    original: bytes,
    whole: bool,
) -> bytes:
    """
    An RFC 3464 delivery status notification (multipart/report), LF line
    ends, addressed to C{sender}.

    @param entries: C{[(recipient, action)]}; a recipient has C{address},
        C{orcpt}, C{orcptType}, C{reply} and C{remote}; the action is
        C{failed}, C{delivered} or C{relayed} (all entries share one kind).
    @param whole: C{original} is the whole message (message/rfc822), else
        its header (text/rfc822-headers).
    """
    kind = entries[0][1]
    boundary = f"{queueId}.{int(now)}/{hostname}"
    date = format_datetime(datetime.fromtimestamp(now, timezone.utc))
    arrived = format_datetime(datetime.fromtimestamp(arrival, timezone.utc))
    human = "\n".join(f"<{r.address}>: {r.reply or 'ok'}" for r, _ in entries)
    blocks = []
    for r, action in entries:
        block = [f"Final-Recipient: rfc822; {r.address}"]
        if r.orcpt:
            block.append(f"Original-Recipient: {r.orcptType or 'rfc822'}; {r.orcpt}")
        if action == "failed":
            words = r.reply.split(" ", 2)
            enhanced = next((w for w in words if w[:1] in "45" and w.count(".") == 2), "5.0.0")
            status = "5" + enhanced[1:]
        else:
            status = "2.0.0"
        block += [f"Action: {action}", f"Status: {status}"]
        if r.remote:
            block.append(f"Remote-MTA: dns; {r.remote.split('[')[0]}")
            block.append(f"Diagnostic-Code: smtp; {r.reply}")
        elif r.reply:
            block.append(f"Diagnostic-Code: X-maillab; {r.reply}")
        blocks.append("\n".join(block))
    envidLine = f"Original-Envelope-Id: {envid}\n" if envid else ""
    text = (
        f"From: MAILER-DAEMON@{hostname} (Mail Delivery System)\n"
        f"To: <{sender}>\n"
        f"Subject: {_SUBJECTS[kind]}\n"
        f"Date: {date}\n"
        f"Message-ID: {make_msgid(domain=hostname)}\n"
        f"Auto-Submitted: auto-replied\n"
        f"MIME-Version: 1.0\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\n'
        f"\n"
        f"--{boundary}\n"
        f"Content-Type: text/plain; charset=utf-8\n"
        f"\n"
        f"This is the mail system at host {hostname}.\n\n"
        f"{_TEXTS[kind]}\n\n{human}\n"
        f"\n--{boundary}\n"
        f"Content-Type: message/delivery-status\n"
        f"\n"
        f"Reporting-MTA: dns; {hostname}\n"
        f"X-Maillab-Queue-ID: {queueId}\n"
        f"{envidLine}"
        f"Arrival-Date: {arrived}\n"
        f"\n" + "\n\n".join(blocks) + "\n"
        f"\n--{boundary}\n"
        f"Content-Type: {'message/rfc822' if whole else 'text/rfc822-headers'}\n"
        f"\n"
    ).encode("utf-8")
    return text + original + f"\n--{boundary}--\n".encode()
