"""
Twisted's own SMTP seams on maillab's protocol.

An application that already has a C{twisted.mail.smtp.IMessageDelivery}
(or C{IMessageDeliveryFactory}) with C{IMessage} objects can put it
behind L{ESMTPServer} unchanged: L{TwistedDelivery} plays both the policy
and the delivery role of L{SMTPServerFactory}, calling C{validateFrom} at
MAIL, C{validateTo} at RCPT (pipelined replies stay in order even when
they return Deferreds), C{receivedHeader} once per message, and
C{IMessage.lineReceived}/C{eomReceived} per recipient, with each line
given without its line end and dot-unstuffed, as Twisted's ESMTP does.

Twisted's C{Address} is ASCII-only, so SMTPUTF8 addresses are refused with
553 5.6.7 on this path.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.mail import smtp
from zope.interface import implementer

from twisted_maillab.interfaces import ISMTPDelivery, ISMTPMessage
from twisted_maillab.smtp.envelope import SMTPReply

__all__ = ["TwistedDelivery"]


class _Peer:
    # What smtp.User looks for on its "protocol" argument.
    def __init__(self, session):
        self.host = session.hostname.encode("ascii", "replace")
        self.session = session


def _address(text: str, host: bytes) -> smtp.Address:
    try:
        return smtp.Address(text.encode("ascii"), host)
    except (UnicodeEncodeError, smtp.AddressError):
        raise SMTPReply(553, "5.6.7", "address not usable here (ASCII only)") from None


def _reply(failure, default: SMTPReply) -> SMTPReply:
    error = failure.value
    if isinstance(error, SMTPReply):
        return error
    if isinstance(error, smtp.SMTPServerError):
        text = error.resp.decode("utf-8", "replace") if isinstance(error.resp, bytes) else str(error.resp)
        enhanced = "5.0.0" if error.code >= 500 else "4.0.0"
        return SMTPReply(error.code, enhanced, text)
    return default


@implementer(ISMTPDelivery)
class TwistedDelivery:
    """
    Policy and delivery from a Twisted C{IMessageDelivery} or
    C{IMessageDeliveryFactory} (one C{getMessageDelivery()} per message).
    """

    def __init__(self, delivery):
        self._delivery = delivery
        self._current = None

    def _forMessage(self):
        if smtp.IMessageDeliveryFactory.providedBy(self._delivery):
            return self._delivery.getMessageDelivery()
        return self._delivery

    # -- policy role ---------------------------------------------------

    def isLocal(self, mailbox) -> bool:
        return True

    def ownsAddress(self, account, address) -> bool:
        # validateFrom decides.
        return True

    def checkSender(self, session, envelope) -> defer.Deferred:
        host = _Peer(session).host
        delivery = self._forMessage()
        envelope.twistedDelivery = delivery
        helo = (session.helo.encode("utf-8", "replace"), session.host.encode("ascii", "replace"))
        origin = _address(envelope.sender.address, host) if not envelope.sender.null else smtp.Address(b"<>")
        envelope.twistedOrigin = origin
        d = defer.maybeDeferred(delivery.validateFrom, helo, origin)
        d.addErrback(lambda f: _raise(_reply(f, SMTPReply(550, "5.1.0", "sender rejected"))))
        return d

    def checkRecipient(self, session, mailbox, envelope=None) -> defer.Deferred:
        peer = _Peer(session)
        try:
            destination = _address(mailbox.address, peer.host)
        except SMTPReply:
            return defer.fail()
        delivery = getattr(envelope, "twistedDelivery", None) or self._forMessage()
        origin = getattr(envelope, "twistedOrigin", None) or smtp.Address(b"<>")
        helo = (session.helo.encode("utf-8", "replace"), session.host.encode("ascii", "replace"))
        user = smtp.User(destination, helo, peer, origin)
        d = defer.maybeDeferred(delivery.validateTo, user)
        d.addCallback(lambda factory: [(user, factory)])
        d.addErrback(lambda f: _raise(_reply(f, SMTPReply(550, "5.1.1", f"{mailbox}: recipient rejected"))))
        return d

    # -- delivery role ---------------------------------------------------

    def begin(self, session, envelope) -> "_Message":
        delivery = getattr(envelope, "twistedDelivery", None) or self._forMessage()
        users, messages = [], []
        for recipient in envelope.recipients:
            for user, factory in recipient.targets:
                users.append(user)
                messages.append(factory())
        helo = (session.helo.encode("utf-8", "replace"), session.host.encode("ascii", "replace"))
        origin = getattr(envelope, "twistedOrigin", None) or smtp.Address(b"<>")
        header = delivery.receivedHeader(helo, origin, users)
        message = _Message(messages, envelope.queueId)
        if header:
            message.lines(header.split(b"\n"))
        return message


@implementer(ISMTPMessage)
class _Message:
    def __init__(self, messages, queueId):
        self.messages = messages
        self.queueId = queueId
        self._partial = b""

    def lines(self, lines):
        for line in lines:
            for message in self.messages:
                message.lineReceived(line)

    def write(self, data: bytes):
        data = self._partial + data
        *complete, self._partial = data.split(b"\n")
        self.lines(complete)

    def end(self):
        if self._partial:
            self.lines([self._partial])
            self._partial = b""
        d = defer.DeferredList(
            [defer.maybeDeferred(m.eomReceived) for m in self.messages], consumeErrors=True
        )

        def done(results):
            for ok, value in results:
                if not ok:
                    raise _reply(value, SMTPReply(550, "5.0.0", "Could not send e-mail"))
            first = results[0][1] if results else None
            if isinstance(first, bytes):
                return first.decode("ascii", "replace")
            return first if isinstance(first, str) else self.queueId

        return d.addCallback(done)

    def abort(self):
        for message in self.messages:
            message.connectionLost()
        self.messages = []


def _raise(error):
    raise error
