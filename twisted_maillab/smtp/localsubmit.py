"""
The daemon's local channels, UNIX sockets beside its state: local
submission for C{maillab sendmail} (C{[server] local_submission_socket})
and the control socket for C{maillab queue}
(L{twisted_maillab.smtp.queuecontrol}).

Local submission is the ESMTP server on a UNIX socket, where the client is
known from the kernel rather than from a password: its peer credentials
(C{SO_PEERCRED}, socket(7)) name the local user, who counts as
authenticated (relaying is allowed as for SASL) and may use only their own
addresses as envelope sender; root and the daemon's own user may use any
(C{sendmail -f}), as Postfix's sendmail lets its trusted users.  The
C{From:} header is not checked, as with Postfix's sendmail.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import pwd
from pathlib import Path

from twisted.application.service import MultiService
from twisted.internet.endpoints import UNIXServerEndpoint
from twisted.logger import Logger

from twisted_maillab.account import Account
from twisted_maillab.config import UNIX_PATH_MAX
from twisted_maillab.console.channel import controlSocket, peerCredentials, submissionSocket
from twisted_maillab.smtp.queuecontrol import ControlService
from twisted_maillab.smtp.server import ESMTPServer, SMTPServerFactory, Settings

__all__ = ["LocalSubmissionServer", "buildLocalServices"]

log = Logger(namespace="twisted_maillab.smtp")


class LocalSubmissionServer(ESMTPServer):
    """
    One C{maillab sendmail} connection: ESMTP with the local user, taken
    from the socket's peer credentials, as the authenticated account.
    """

    def connectionMade(self):
        credentials = peerCredentials(self.transport.getHandle())
        super().connectionMade()
        self.session.host = "localhost"
        if credentials is None:
            self._refuse("cannot tell who you are")
            return
        _, uid, gid = credentials
        try:
            user = pwd.getpwuid(uid)
        except KeyError:
            self._refuse(f"uid {uid} has no user name")
            return
        domain = self.factory.domain
        self.session.account = Account(
            name=user.pw_name,
            domain=domain,
            home=Path(user.pw_dir),
            uid=uid,
            gid=gid,
            maildir=Path(user.pw_dir) / "Maildir",
        )
        self.session.authName = user.pw_name
        self.session.authMechanism = "peercred"
        self.session.reverseName = f"uid {uid}"
        if uid in (0, os.geteuid()):
            # Trusted users may set any envelope sender (sendmail -f).
            self.settings = dataclasses.replace(self.settings, rejectSenderMismatch=False)

    def _refuse(self, why: str):
        self._reply(421, "4.7.0", f"{self.settings.hostname} Error: {why}")
        self.transport.loseConnection()


class LocalSubmissionFactory(SMTPServerFactory):
    def buildProtocol(self, addr):
        protocol = LocalSubmissionServer(self)
        protocol.factory = self
        return protocol


def _usable(path: Path, what: str) -> bool:
    # A state directory deep enough to make its sockets' paths too long
    # for sockaddr_un costs the console its channel, not the mail service
    # (an explicit local_submission_socket is checked with the config).
    if len(os.fsencode(path)) <= UNIX_PATH_MAX:
        return True
    log.error(
        "{what} socket disabled: {path} is longer than a UNIX socket path may be",
        what=what, path=str(path),
    )
    return False


def buildLocalServices(config, resources, backend) -> MultiService:
    """
    The control socket (when the outbound queue runs) and the local
    submission socket, for the SMTP listeners' shared backend.
    """
    from twisted_maillab.service import ListenerService

    group = MultiService()
    reactor = resources.reactor
    if backend.outbound is not None and _usable(controlSocket(config), "control"):
        ControlService(reactor, backend.outbound, controlSocket(config)).setServiceParent(group)
    path = submissionSocket(config)
    if not _usable(path, "local submission"):
        return group
    smtp = config.smtp
    settings = Settings(
        hostname=backend.hostname,
        banner=smtp.smtpd_banner.replace("$myhostname", backend.hostname),
        listener="local",
        sizeLimit=smtp.message_size_limit,
        commandTimeout=smtp.smtpd_timeout,
        dataTimeout=smtp.smtpd_data_timeout,
        maxRecipients=smtp.smtpd_recipient_limit,
        maxConnectionsPerClient=0,
        authEnable=False,
        requireAuth=True,
        vrfy=smtp.vrfy_command,
        rejectSenderMismatch=True,
        peernameLookup=False,
    )
    delivery = copy.copy(backend.delivery)
    delivery.checkFrom = False
    factory = LocalSubmissionFactory(
        settings,
        backend.policy,
        delivery,
        clock=reactor,
        queueIds=backend.queueIds,
    )
    factory.domain = config.server.domain
    # 0666: anyone who can reach the socket may submit; the kernel's
    # credentials, not the file mode, decide the sender.
    endpoint = UNIXServerEndpoint(reactor, str(path), mode=0o666, wantPID=True)
    ListenerService("local submission", endpoint, factory).setServiceParent(group)
    return group
