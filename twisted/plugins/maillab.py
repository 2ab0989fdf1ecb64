# The twistd plugin "maillab"; everything else lives in twisted_maillab.tap.
from twisted.application.service import ServiceMaker

maillab = ServiceMaker(
    "maillab",
    "twisted_maillab.tap",
    "Mail suite for one domain: authoritative DNS, SMTP and submission, POP3 and IMAP over Maildir",
    "maillab",
)
