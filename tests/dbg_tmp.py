from twisted.trial import unittest
from tests.imap_servers import Dovecot
class T(unittest.TestCase):
    def test_x(self):
        d = Dovecot(self)
        c = d.imap()
        c.debug = 0
        print(c.create("Box"))
        print(c.append("Box", None, None, b"Subject: x\r\n\r\nbody\r\n"))
        print(c.select("Box"))
        for cmd in [b'r1 RENAME Box Renamed', b'n1 NOOP', b'f1 FETCH 1 (FLAGS BODY[HEADER])', b'a1 APPEND Renamed {3+}\r\nabc', b'n2 NOOP', b's1 SEARCH ALL', b'r2 RENAME Renamed Again', b'n3 NOOP', b'f2 FETCH 1:* FLAGS', b'st STORE 1 +FLAGS (\\Flagged)']:
            c.send(cmd + b"\r\n")
            tag = cmd.split()[0]
            while True:
                line = c.readline()
                print(line)
                if line.startswith(tag) or line.startswith(b"* BYE"):
                    break
