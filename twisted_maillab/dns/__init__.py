"""
Authoritative DNS from BIND master files, answering as BIND and NSD do:
our own zone parser (L{zone}) and answer logic (L{answer}) over
C{twisted.names}-style wire handling (L{wire}) and Twisted transports
(L{server}), composed by L{service.makeDNSService}.
"""
