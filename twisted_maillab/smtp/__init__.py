"""
The seed's Postfix: ESMTP on 25 (MX), submission on 587 (STARTTLS) and 465
(implicit TLS) with SASL, the main.cf policy (mydestination, mynetworks,
smtpd_relay_restrictions, aliases, recipient_delimiter, sender login
mismatch), local delivery to Maildir through the store, and relay to other
domains through an outbound queue.

  - L{twisted_maillab.smtp.server}: the protocol (why it is not a subclass
    of Twisted's C{ESMTP}: see its docstring).
  - L{twisted_maillab.smtp.envelope}: MAIL/RCPT paths and parameters.
  - L{twisted_maillab.smtp.policy}: relay, recipients, sender ownership.
  - L{twisted_maillab.smtp.aliases}: C{/etc/aliases} files.
  - L{twisted_maillab.smtp.delivery}: store transactions, headers, queue ids,
    success notices.
  - L{twisted_maillab.smtp.outbound}: the outbound queue (scheduling, MX
    routing, bounces); L{twisted_maillab.smtp.spool}: its files;
    L{twisted_maillab.smtp.relayclient}: the SMTP client;
    L{twisted_maillab.smtp.dsn}: RFC 3464 reports.
  - L{twisted_maillab.smtp.pipes}: alias C{|command} and C{/file} targets.
  - L{twisted_maillab.smtp.twistedseam}: Twisted's C{IMessageDelivery} and
    C{IMessage} behind this server.
  - L{twisted_maillab.smtp.service}: the C{[smtp]}, C{[submission]},
    C{[submissions]} builders.
"""
