"""
IMAP4rev1 (RFC 3501) with the RFC 9051 behaviour clients rely on, served
from the Maildir store.

The wire syntax lives in pure modules without I/O: L{parser} turns the
bytes a client sent into typed commands and assembles them from a byte
stream, literals included (its types are in L{parsetypes}, its grammar in
L{grammar}); L{response} formats what the server sends back; L{mutf7}
converts mailbox names to and from modified UTF-7 (RFC 3501 5.1.3).

The server (L{server}, with L{session}, L{fetch} and L{mailboxcmds}; wired
by L{service}) is our own protocol on the suite's command engine
(L{twisted_maillab.lines.CommandEngine}), the one SMTP and POP3 use, not a
subclass of Twisted's C{imap4.IMAP4Server}.  Why: almost every part of that
class would need replacing to meet the protocol (its IDLE ends on any line;
it has no expunge notification and leaks its mailbox listeners; APPEND
without flags crashes and its literals are unbounded; TRYCREATE, UIDNEXT,
PERMANENTFLAGS, UNSEEN and implicit \\Seen are missing; pipelined input
after STARTTLS is executed; a long line drops the connection; its
C{IMailbox} interfaces are synchronous and count messages through one
object shared by all sessions, where each session needs its own sequence
numbers), and its dispatch is name-mangled.  What the engine gives instead
is shared and tested once: ordered processing, bounded pipelining, line
limits, literals read with L{twisted_maillab.lines.CommandEngine.readOctets},
the STARTTLS discard, the idle timer and the SASL exchange.  Twisted's own
interfaces are still served for other Twisted applications by
L{twistedseam} (C{imap4.IAccount} from the realm).

The message structure (ENVELOPE, BODYSTRUCTURE, sections, BINARY) is
L{structure} and L{sections}; SEARCH and SORT are L{search} and L{sort};
both block and run in the store's thread pool.
"""
