"""
IMAP4rev1 (RFC 3501) with the RFC 9051 behaviour clients rely on, served
from the Maildir store.

The wire syntax lives in pure modules without I/O: L{parser} turns the
bytes a client sent into typed commands and assembles them from a byte
stream, literals included (its types are in L{parsetypes}, its grammar in
L{grammar}); L{response} formats what the server sends back; L{mutf7}
converts mailbox names to and from modified UTF-7 (RFC 3501 5.1.3).
"""
