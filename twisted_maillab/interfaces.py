"""
The seams other Twisted applications plug into.
"""

from dataclasses import dataclass

from zope.interface import Attribute, Interface


class IServiceBuilder(Interface):
    """
    Builds the service for one configuration section (C{[dns]}, C{[smtp]},
    ...).  L{twisted_maillab.service.makeService} calls one builder per
    enabled listening section.  Builders are found as C{twisted.plugin}
    plugins (an object providing this and L{twisted.plugin.IPlugin} in a
    C{twisted/plugins/} module): the shipped ones and those of other
    packages alike (L{twisted_maillab.plugins}).
    """

    section = Attribute("The name of the ini section this builder serves.")
    sectionClass = Attribute(
        "The L{twisted_maillab.config.ListenerSection} subclass declaring the "
        "section's keys (its C{name} is L{section}), which the config reader "
        "checks like its own; L{None} for the sections maillab declares."
    )
    after = Attribute(
        "Names of sections whose services must start before this one's (and "
        "stop after it); C{()} for none."
    )

    def __call__(config, resources):
        """
        @param config: the whole L{twisted_maillab.config.Config}.
        @param resources: the shared L{twisted_maillab.service.Resources}
            (TLS context, portal, store, reactor).
        @return: an L{twisted.application.service.IService} (usually a
            L{MultiService} of listeners from C{resources.listen}).
        @raise twisted_maillab.config.ConfigError: for problems found while
            building (unreadable zone, missing inherited socket, ...).
        """


# ---------------------------------------------------------------------------
# Authentication (twisted_maillab.auth).


class IMailPortal(Interface):
    """
    The portal SMTP AUTH, POP3 and IMAP log in through
    (L{twisted_maillab.auth.makePortal}).  Every password attempt must
    carry the client's address and the protocol name so it can be
    throttled and logged (one line per attempt, matched by fail2ban).

    Protocols use it in one of two ways:

      - per connection, C{portal.forConnection(transport.getPeer(), "imap")}
        returns an object whose C{login(credentials, mind, *interfaces)}
        is the address-carrying login; hand it to Twisted's protocol
        classes as their C{portal} so their own C{portal.login(...)} calls
        (C{ESMTP.state_AUTH}, C{IMAP4Server.authenticateLogin},
        C{POP3.do_PASS}) are throttled unchanged;
      - or directly, C{portal.loginFrom(credentials, peer, "pop3", None,
        IMailbox)}.

    A plain C{login} without address is throttled under the address
    C{unknown} (shared by every such caller).
    """

    realm = Attribute("The L{IMailRealm} avatars come from.")
    directory = Attribute("The L{IAccountDirectory} of this portal.")

    def forConnection(peer, protocol):
        """
        @param peer: the client: a transport, its peer L{IAddress}, or a
            host string.
        @param protocol: short lower-case name logged as C{proto=}:
            C{smtp}, C{submission}, C{pop3}, C{imap}...
        @return: an object with the same C{login(credentials, mind,
            *interfaces)} signature as L{twisted.cred.portal.Portal.login}.
        """

    def loginFrom(credentials, peer, protocol, mind, *interfaces):
        """
        Check C{credentials} (an L{IUsernamePassword}, e.g. from
        L{twisted_maillab.auth.sasl}) from C{peer} and build the avatar.

        @return: L{Deferred} of C{(interface, avatar, logout)}.  It fails
            with L{twisted.cred.error.UnauthorizedLogin} for a wrong
            password, an unknown user or a locked-out address (the reply
            to a failure may be delayed by the throttle: answer the client
            only when it fires), and with
            L{twisted_maillab.auth.AuthenticationUnavailable} when too
            many checks are queued (answer with a temporary failure).
            Credentials without a C{username} (Anonymous) go to the realm
            unthrottled.
        """


class IMailRealm(Interface):
    """
    The realm of L{IMailPortal}: one account, many protocol avatars.
    """

    def registerAvatarFactory(interface, factory):
        """
        Serve logins that ask for C{interface} (SMTP C{IMessageDelivery},
        POP3 C{IMailbox}, IMAP C{IAccount}...).

        @param factory: C{factory(account: Account) -> avatar} (or a
            L{Deferred} of it).  If the avatar has a callable C{logout}
            attribute it is called when the session ends.
        @raise ValueError: a factory for C{interface} is already registered.
        """

    def registerAnonymousFactory(interface, factory):
        """
        Serve anonymous logins (L{twisted.cred.checkers.ANONYMOUS} avatar
        ID) asking for C{interface} with C{factory()}.
        """


class IAccountDirectory(Interface):
    """
    Names and addresses -> L{twisted_maillab.account.Account}, with the
    username rules documented in L{twisted_maillab.auth.names}.
    """

    localDomains = Attribute(
        "Tuple of lower-case local domains; the first is [server] domain."
    )

    def isLocalDomain(domain):
        """
        @return: whether mail for C{domain} is delivered here.
        """

    def lookup(name):
        """
        The account a login name or avatar ID names (C{edouard} and
        C{edouard@<local domain>} are the same account; a name holding the
        recipient delimiter names none).

        @return: L{Deferred} of an L{Account} or L{None}.
        """

    def lookupRecipient(address, delimiters=None):
        """
        The account mail for C{address} goes to: the whole local part,
        then the part before the first recipient delimiter.  Addresses in
        other domains give L{None} (the caller decides about relaying).

        @param delimiters: delimiter characters (Postfix's
            C{recipient_delimiter}); L{None} for C{[auth]
            recipient_delimiter}, C{""} for none.
        @return: L{Deferred} of an L{Account} or L{None} (RCPT: 550 5.1.1).
        """


# ---------------------------------------------------------------------------
# The store (twisted_maillab.store): what SMTP, POP3 and IMAP rely on.


class IMailStore(Interface):
    """
    The process's Maildir store (L{twisted_maillab.store.makeStore}).
    """

    def mailboxes(account):
        """
        @param account: a L{twisted_maillab.account.Account}.
        @return: the account's L{IMailboxes}.
        """

    def beginDelivery():
        """
        @return: a new L{IDeliveryTransaction}.
        """

    def close():
        """
        Stop the thread pool, timers and watchers.  @return: a Deferred.
        """


class IDeliveryTransaction(Interface):
    """
    One message, one or more recipients: begin -> addRecipient -> write ->
    commit or abort.  Errors are L{twisted_maillab.store.StoreError}s that
    carry C{temporary}, C{smtpCode}, C{enhancedCode} and C{imapCode}.
    """

    def addRecipient(account, folder="INBOX", prependHeaders=b"", create=False):
        """
        Add a recipient before the first write; C{prependHeaders} are this
        recipient's own header lines (Return-Path, Delivered-To...).
        """

    def write(chunk):
        """
        Stream body bytes (call many times).  @return: a Deferred for
        back-pressure.
        """

    def commit():
        """
        @return: a Deferred firing with one C{RecipientResult} per recipient
            (C{.ok}, C{.error}, C{.filename}); the message is on disk, fsynced,
            in C{new/} for each C{ok} recipient.
        """

    def abort():
        """
        Discard everything written.  @return: a Deferred.
        """


class IMailboxes(Interface):
    """
    An account's folders (Maildir++).  Names use C{separator} ("/") between
    levels; every method returns a Deferred.
    """

    separator = Attribute("The hierarchy delimiter of folder names.")

    def list():
        """
        @return: Deferred list of C{FolderInfo(name, specialUse, subscribed,
            hasChildren, exists)}, INBOX first.
        """

    def open(name="INBOX", create=False):
        """
        @return: Deferred L{IFolder}, shared by all sessions; give it back
            with C{folder.close()}.
        """

    def create(name, specialUse=None):
        """
        Create a folder (MailboxExists, InvalidMailboxName on error), with a
        special-use role (RFC 6154 3: C{"\\Drafts"}...) that L{list} reports
        unless the configuration gives the name another.
        """

    def delete(name):
        """Delete a folder and its messages."""

    def rename(old, new):
        """Rename a folder and its children."""

    def subscribe(name):
        """Add to the subscriptions file."""

    def unsubscribe(name):
        """Remove from the subscriptions file."""

    def subscriptions():
        """@return: Deferred list of subscribed names."""

    def ensureDefaults():
        """Create INBOX and the special-use folders at first login."""


class IFolder(Interface):
    """
    An open folder with its in-memory index.  Reads are synchronous;
    changes return Deferreds and notify the other subscribers.
    """

    name = Attribute("The folder name.")
    uidValidity = Attribute("UIDVALIDITY.")
    uidNext = Attribute("UIDNEXT.")

    def uids():
        """All UIDs ascending (sequence order)."""

    def message(uid):
        """The C{Message} (size, vsize, isNew, ...) or MessageVanished."""

    def flags(uid):
        """frozenset of flags and keywords (no \\Recent)."""

    def size(uid):
        """Stored octets."""

    def internalDate(uid):
        """POSIX time of the internal date."""

    def openMessage(uid):
        """A binary file object (symlink-safe); read it in chunks."""

    def openMessageDeferred(uid):
        """openMessage in the thread pool: Deferred binary file object."""

    def openMessageInThread(uid):
        """openMessage for code already running in the store's thread pool."""

    def prefetch(uids):
        """Deferred: stat internal dates/sizes of many messages in a thread."""

    def recentUids():
        """UIDs no session claimed yet (in new/, or written to cur/ by APPEND/COPY/MOVE)."""

    def takeRecent(within=None, origin=None):
        """Claim now (set of UIDs recent for the caller only); new/ moves to cur/ later."""

    def claimRecent(origin=None, within=None):
        """takeRecent; Deferred sorted list, fired once the claimed new/ files are in cur/."""

    def setFlags(uids, flags, mode="replace", origin=None):
        """Deferred {uid: flags}; mode replace/add/remove."""

    def append(source, flags=(), internalDate=None, origin=None):
        """Deferred new UID (APPENDUID)."""

    def copyTo(uids, target, origin=None, move=False):
        """Deferred [(sourceUid, targetUid)] (COPYUID); move=True for MOVE."""

    def expunge(uids=None, origin=None):
        """Deferred list of expunged UIDs (None: all \\Deleted)."""

    def snapshot():
        """POP3: [(uid, size, uidl)]."""

    def pop3Uidl(uid):
        """The POP3 UIDL (Dovecot's %08Xu%08Xv)."""

    def refresh(full=False):
        """Sync with the disk now; Deferred."""

    def subscribe(listener):
        """Register an L{IFolderListener} (any subset of its methods)."""

    def unsubscribe(listener):
        """Stop notifying C{listener}."""

    def close():
        """Give back the reference from C{IMailboxes.open}."""


class IMessageReader(Interface):
    """
    An open message, read in chunks so that a large message never sits in
    memory whole (L{twisted_maillab.store.reading.ThreadedReader}).
    """

    def read(size):
        """
        @param size: the most bytes to return.
        @return: L{Deferred} firing with up to C{size} bytes, C{b""} at the
            end of the message.
        """

    def close():
        """
        Release the file.  Safe to call more than once.
        """


class IFolderListener(Interface):
    """
    What a folder tells its subscribers (all optional).  C{origin=} on a
    change excludes the session that made it.
    """

    def messagesAdded(folder, uids):
        """New messages (delivery, APPEND, COPY, another program)."""

    def flagsChanged(folder, uids):
        """Flags of these messages changed."""

    def messagesExpunged(folder, uids):
        """These UIDs are gone."""

    def folderReset(folder):
        """UIDVALIDITY changed or the folder was deleted/renamed: reselect."""


# ---------------------------------------------------------------------------
# SMTP (twisted_maillab.smtp).  Twisted's IMessageDelivery/IMessage hand the
# message over line by line with no envelope parameters; these seams carry
# the parsed envelope and stream the body in chunks.


class ISMTPMessage(Interface):
    """
    One message being received (the streaming counterpart of Twisted's
    L{twisted.mail.interfaces.IMessageSMTP}).
    """

    def write(data):
        """
        Body bytes: LF line ends, dot-stuffing removed.

        @return: L{None} or a L{Deferred}; the server reads no more from
            the client until it fires (back-pressure).
        """

    def end():
        """
        The final C{.} arrived.

        @return: L{Deferred} firing with the queue id (the server answers
            C{250 2.0.0 Ok: queued as <id>}) or failing with
            L{twisted_maillab.smtp.envelope.SMTPReply}.
        """

    def abort():
        """
        The message is abandoned (size limit, timeout, lost connection).
        """


class ISMTPDelivery(Interface):
    """
    Where accepted messages go (local Maildir delivery, a filter, a queue).
    """

    def begin(session, envelope):
        """
        Start a message after DATA.

        @param session: the L{twisted_maillab.smtp.server.Session}.
        @param envelope: the L{twisted_maillab.smtp.server.Envelope} (sender,
            MAIL parameters, recipients with their resolved targets and
            DSN parameters, queue id).
        @return: an L{ISMTPMessage}.
        @raise twisted_maillab.smtp.envelope.SMTPReply: refuse the message.
        """


class IOutboundTLSPolicy(Interface):
    """
    What the outbound queue demands of a destination's TLS
    (L{twisted_maillab.tlspolicy.policy.OutboundTLSPolicy}: the
    C{tls_policy} table, DANE, MTA-STS).  The queue asks once per domain
    and attempt, then once per MX host it tries; the host's policy is
    consulted by the SMTP client when STARTTLS is missing, when the
    handshake fails and once it succeeds.  A level that forbids plaintext
    raises L{twisted_maillab.smtp.relayclient.TLSPolicyFailure} (a 4.7.x
    temporary failure): the recipients are deferred, never sent in clear.
    """

    def forDomain(domain, hosts, resolver):
        """
        @param domain: the destination domain, lower case.
        @param hosts: its MX host names, best first.
        @param resolver: the queue's resolver.
        @return: a coroutine giving a plan with C{hosts} (those that may
            be tried, e.g. only the MTA-STS C{mx} matches) and an
            C{async forHost(host)} giving that host's policy
            (C{wantsTLS}, C{clientTLS(options, host)},
            C{noStartTLS(host, address)}, C{handshakeFailed(host,
            address)}, C{checkPeer(connection, host, address)}).
        @raise TLSPolicyFailure: no host may be tried.
        """


class IZoneSource(Interface):
    """
    Where the C{[dns]} service gets the zones it serves: BIND master files
    by default (L{twisted_maillab.dns.service.FileZoneSource}); an
    application embedding maillab may generate them instead.
    """

    def load():
        """
        Read every zone.  Blocking: called once before the service starts
        and, on reload, in a thread.

        @return: a list of L{twisted_maillab.dns.zone.Zone}.
        @raise twisted_maillab.config.ConfigError: a zone cannot be served
            (L{twisted_maillab.dns.zone.ZoneError} names file and lines).
        """


class IRecordPublisher(Interface):
    """
    Records the suite generates from its own configuration and serves in
    the zones it is authoritative for, when C{[dns] publish_mail_records}
    is on (L{twisted_maillab.dns.published}): service SRV records, DKIM
    keys, SPF, DMARC and the like, true by construction because they come
    from the config that makes them true.
    """

    name = Attribute("What publishes, for messages: e.g. C{'DKIM keys'}.")

    def records(config, origin):
        """
        The records to add to one zone.  Blocking reads are allowed: called
        in a thread at each (re)load, and once before the service starts.

        @param config: the running L{twisted_maillab.config.Config}.
        @param origin: the zone's origin, absolute, lower case, with its
            trailing dot (C{"example.org."}).
        @return: an iterable of master-file lines as the zone parser reads
            them (owner relative to C{origin} or absolute, optional TTL,
            optional class, type, rdata); nothing for a zone that is not
            one of ours.  A line without a TTL gets
            L{twisted_maillab.dns.published.DEFAULT_TTL}.
        @raise Exception: stops the load, naming this publisher.
        """


# ---------------------------------------------------------------------------
# POP3 (twisted_maillab.pop3): the seam between the protocol and the store.
# It is our own rather than Twisted's twisted.mail.pop3.IMailbox, which is
# synchronous (a 100,000-message INBOX would be listed on the reactor
# thread), deletes at DELE time in every implementation Twisted ships (a
# dropped session would lose mail, RFC 1939 section 6), and knows no
# per-mailbox session lock or marking retrieved mail seen.


@dataclass(frozen=True)
class MessageInfo:
    """
    One message of a POP3 snapshot.

    @ivar uidl: the unique-id listing value (RFC 1939 section 7: 1 to 70
        characters in 0x21..0x7E), stable across sessions and restarts.
    @ivar size: the size in octets as RETR sends it (CRLF line endings,
        before dot-stuffing), which is what LIST and STAT report.
    """

    uidl: bytes
    size: int


class IPOP3Maildrop(Interface):
    """
    One POP3 session's view of an account's INBOX (RFC 1939 "maildrop").

    The protocol calls L{open} once the session lock is held, then works on
    the numbered snapshot it returned; message numbers passed to the other
    methods are 0-based indexes into that snapshot.
    """

    lockKey = Attribute(
        "Hashable identity of the mailbox: two sessions with equal keys may "
        "not run at once (RFC 2449 8.1.2 IN-USE)."
    )

    def open():
        """
        Take the snapshot of INBOX the session works on.

        @return: L{Deferred} firing with a sequence of L{MessageInfo}, in
            the order of the message numbers 1..n.
        """

    def openMessage(index):
        """
        @return: L{Deferred} firing with an L{IMessageReader} of the message
            as stored (LF or CRLF line endings), or failing with a
            L{twisted_maillab.store.errors.StoreError} (C{MessageVanished}
            when another program expunged it).
        """

    def retrieved(index):
        """
        The whole message was sent by RETR: leave C{new/} for C{cur/} (it
        is no longer recent for IMAP), as Dovecot does.

        @return: L{Deferred}; a failure is logged, never shown to the client.
        """

    def commit(deleted, seen):
        """
        The UPDATE state (RFC 1939 section 6): expunge the messages whose
        indexes are in C{deleted} and flag C{\\Seen} those in C{seen}.

        @param deleted: frozenset of indexes.
        @param seen: frozenset of indexes retrieved by RETR in this session.
        @return: L{Deferred} firing when done; fails with a StoreError when
            some deletions could not be made.
        """

    def logout():
        """
        The session is over (QUIT, timeout or dropped connection); release
        anything held.  Called exactly once.
        """
