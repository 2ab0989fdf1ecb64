"""
Clients the acceptance suite runs on the neighbour host (inside its
network namespace), as C{python -m tests.e2e.clients NAME ADDRESS PORTS...
ARGS...}; the ports come in the order of L{tests.e2e.lab.LISTENERS}.  Each
prints what it saw as JSON on standard output for the test to check.
"""

from __future__ import annotations

import base64
import json
import random
import smtplib
import socket
import ssl
import sys
import threading
import time

from tests.e2e.lab import LISTENERS

NAMES = list(LISTENERS)


def burst(address, ports, count, threads):
    """
    Send C{count} messages to edouard over port 25 from C{threads}
    connections at once, one session per message; print the subject of
    every message the server answered 250 to after its DATA, as it comes.
    Stops at the first connection error of each thread (the server was
    killed).
    """
    count, threads = int(count), int(threads)
    numbers = iter(range(count))
    lock = threading.Lock()
    accepted = []

    def send():
        while True:
            with lock:
                number = next(numbers, None)
            if number is None:
                return
            subject = f"burst {number}"
            body = ("line of burst mail " * 3 + "\r\n") * 20
            message = f"From: voisin@example.org\r\nTo: edouard@smtp.domaineel.rt\r\nSubject: {subject}\r\n\r\n{body}"
            try:
                with smtplib.SMTP(address, ports["smtp"], timeout=10) as client:
                    client.sendmail("voisin@example.org", ["edouard@smtp.domaineel.rt"], message)
            except (OSError, smtplib.SMTPException):
                return
            with lock:
                accepted.append(subject)
                print(json.dumps(subject), flush=True)

    workers = [threading.Thread(target=send) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def _lines(sock, until, deadline=10.0):
    sock.settimeout(deadline)
    data = b""
    while until not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.decode("latin-1")


def plaintext(address, ports, user, password):
    """
    Try the right password in clear on every unencrypted listener: SMTP
    (25) and submission (587) AUTH PLAIN, POP3 USER/PASS and AUTH PLAIN,
    IMAP LOGIN and AUTHENTICATE PLAIN.  Print every reply.
    """
    plain = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    seen = {}
    for name in ("smtp", "submission"):
        with socket.create_connection((address, ports[name]), timeout=10) as sock:
            greeting = _lines(sock, b"\r\n")
            sock.sendall(b"EHLO antenn04.example.org\r\n")
            ehlo = _lines(sock, b"250 ")
            sock.sendall(f"AUTH PLAIN {plain}\r\n".encode())
            seen[name] = {"greeting": greeting, "ehlo": ehlo, "auth": _lines(sock, b"\r\n")}
    with socket.create_connection((address, ports["pop3"]), timeout=10) as sock:
        seen["pop3"] = {"greeting": _lines(sock, b"\r\n")}
        sock.sendall(f"USER {user}\r\n".encode())
        seen["pop3"]["user"] = _lines(sock, b"\r\n")
        sock.sendall(f"PASS {password}\r\n".encode())
        seen["pop3"]["pass"] = _lines(sock, b"\r\n")
        sock.sendall(f"AUTH PLAIN {plain}\r\n".encode())
        seen["pop3"]["auth"] = _lines(sock, b"\r\n")
        sock.sendall(b"STAT\r\n")
        seen["pop3"]["stat"] = _lines(sock, b"\r\n")
    with socket.create_connection((address, ports["imap"]), timeout=10) as sock:
        seen["imap"] = {"greeting": _lines(sock, b"\r\n")}
        sock.sendall(b"a1 CAPABILITY\r\n")
        seen["imap"]["capability"] = _lines(sock, b"a1 ")
        sock.sendall(f'a2 LOGIN {user} "{password}"\r\n'.encode())
        seen["imap"]["login"] = _lines(sock, b"a2 ")
        sock.sendall(f"a3 AUTHENTICATE PLAIN {plain}\r\n".encode())
        seen["imap"]["authenticate"] = _lines(sock, b"a3 ")
        sock.sendall(b"a4 SELECT INBOX\r\n")
        seen["imap"]["select"] = _lines(sock, b"a4 ")
    print(json.dumps(seen))


def seedimap(address, ports, user, password, starttls):
    """
    The seed's telnet session on port 143, line by line: login, select
    inbox, fetch 1 body, fetch 1 body[header], logout.  Print each
    command's replies.  With C{starttls} "yes", STARTTLS comes first (the
    loopback form of the lab refuses logins in clear on loopback too).
    """
    seen = {}
    with socket.create_connection((address, ports["imap"]), timeout=10) as raw:
        sock = raw
        seen["greeting"] = _lines(sock, b"\r\n")
        if starttls == "yes":
            sock.sendall(b"a000 STARTTLS\r\n")
            seen["a000"] = _lines(sock, b"a000 ")
            sock = _tls().wrap_socket(raw)
        for tag, command in (("a001", f"login {user} {password}"), ("a003", "select inbox"),
                             ("a004", "fetch 1 body"), ("a005", "fetch 1 body[header]"), ("a006", "logout")):
            sock.sendall(f"{tag} {command}\r\n".encode())
            seen[tag] = _lines(sock, f"{tag} ".encode())
            while not seen[tag].endswith("\r\n"):
                seen[tag] += _lines(sock, b"\r\n")
    print(json.dumps(seen))


VALID = {
    "smtp": [b"EHLO antenn04.example.org", b"HELO x", b"MAIL FROM:<voisin@example.org> SIZE=349",
             b"RCPT TO:<edouard@smtp.domaineel.rt>", b"AUTH PLAIN AGVkb3VhcmQAeA==", b"STARTTLS",
             b"VRFY edouard", b"ETRN domaineel.rt", b"BDAT 10 LAST", b"RSET", b"NOOP", b"DATA"],
    "pop3": [b"USER edouard", b"PASS x", b"APOP edouard 0123456789abcdef", b"CAPA", b"STLS",
             b"AUTH PLAIN AGVkb3VhcmQAeA==", b"LIST 1", b"TOP 1 10", b"UIDL", b"RETR 1"],
    "imap": [b"a1 CAPABILITY", b'a2 LOGIN edouard "x"', b"a3 SELECT INBOX", b"a4 FETCH 1:* (BODY[HEADER])",
             b"a5 STARTTLS", b"a6 AUTHENTICATE PLAIN", b"a7 ID (\"name\" \"x\")", b"a8 LIST \"\" *",
             b"a9 APPEND INBOX {5}", b"b1 UID SEARCH CHARSET UTF-8 TEXT x", b"b2 NOOP", b"b3 ENABLE UTF8=ACCEPT"],
}


def _garbage(rng, valid):
    kind = rng.random()
    if kind < 0.4:
        command = rng.choice(valid)
        return command[: rng.randrange(len(command) + 1)]
    if kind < 0.7:
        return bytes(rng.randrange(32, 127) for _ in range(rng.randrange(120)))
    if kind < 0.95:
        # Anything but the line end itself: NULs, 8-bit, bare CR.
        return bytes(rng.randrange(256) for _ in range(rng.randrange(200))).replace(b"\n", b"")
    return b"A" * rng.randrange(5000, 20000)


def _fuzzStream(address, port, rng, valid, lines, perConnection, budget):
    deadline = time.monotonic() + budget
    sent = replies = 0
    while sent < lines and time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=5) as sock:
                sock.settimeout(2)
                batch = [_garbage(rng, valid) for _ in range(perConnection)]
                # Some lines end in a bare LF; the last one has no line
                # end at all.
                payload = b"".join(line + rng.choice([b"\r\n", b"\r\n", b"\r\n", b"\n"]) for line in batch[:-1])
                sock.sendall(payload + batch[-1])
                # End the session as a vanished client does: the server
                # sees end of file in the middle of a line.
                sock.shutdown(socket.SHUT_WR)
                sent += len(batch)
                try:
                    while chunk := sock.recv(65536):
                        replies += chunk.count(b"\n")
                except OSError:
                    pass
        except OSError:
            sent += perConnection
    return sent, replies


# Read-only commands for the logged-in passes: the pass must not delete
# the mail whose survival it checks.  No IDLE and no literal: either would
# swallow the closing LOGOUT and leave each session to its timeout.
VALID_LOGGED_IN = {
    "pop3": [b"STAT", b"LIST", b"LIST 1", b"UIDL", b"UIDL 1", b"TOP 1 0", b"RETR 1", b"NOOP", b"RSET", b"CAPA"],
    "imap": [b"a3 EXAMINE INBOX", b"a4 FETCH 1:* (BODY.PEEK[HEADER] FLAGS)", b"a5 UID FETCH 1:* (BODYSTRUCTURE ENVELOPE)",
             b"a6 SEARCH CHARSET UTF-8 TEXT x", b'a7 LIST "" *', b"a8 STATUS INBOX (MESSAGES UIDNEXT)", b"a9 NOOP",
             b"b2 FETCH 1 BINARY.PEEK[1]", b"b3 UID SORT (DATE) UTF-8 ALL", b"b4 NAMESPACE",
             b"b5 FETCH 1 (BODY.PEEK[1.MIME] RFC822.SIZE)"],
}


def _tls():
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _logIn(name, raw, user, password):
    """
    STARTTLS (STLS) and a login on a fresh IMAP (POP3) connection; the
    TLS socket, or None when the server said no.
    """
    _lines(raw, b"\r\n")
    if name == "imap":
        raw.sendall(b"s0 STARTTLS\r\n")
        if "s0 OK" not in _lines(raw, b"s0 "):
            return None
        sock = _tls().wrap_socket(raw)
        sock.sendall(f'l0 LOGIN {user} "{password}"\r\n'.encode())
        reply = _lines(sock, b"l0 ")
        while not reply.endswith("\r\n"):
            reply += _lines(sock, b"\r\n")
        return sock if "l0 OK" in reply else None
    raw.sendall(b"STLS\r\n")
    if not _lines(raw, b"\r\n").startswith("+OK"):
        return None
    sock = _tls().wrap_socket(raw)
    sock.sendall(f"USER {user}\r\n".encode())
    _lines(sock, b"\r\n")
    sock.sendall(f"PASS {password}\r\n".encode())
    return sock if _lines(sock, b"\r\n").startswith("+OK") else None


def _fuzzLoggedIn(name, address, port, rng, lines, perConnection, budget, user, password):
    """
    Sessions that STARTTLS and log in, then send random and truncated
    read-only commands and end with a logout.
    """
    deadline = time.monotonic() + budget
    sent = replies = sessions = 0
    quit = b"\r\nzz LOGOUT\r\n" if name == "imap" else b"\r\nQUIT\r\n"
    while sent < lines and time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=5) as raw:
                sock = _logIn(name, raw, user, password)
                sent += perConnection
                if sock is None:
                    continue
                sessions += 1
                sock.settimeout(2)
                batch = [_garbage(rng, VALID_LOGGED_IN[name]) for _ in range(perConnection)]
                sock.sendall(b"\r\n".join(batch) + quit)
                try:
                    while chunk := sock.recv(65536):
                        replies += chunk.count(b"\n")
                except (OSError, ssl.SSLError):
                    pass
        except OSError:
            pass
    return {"sent": sent, "replies": replies, "sessions": sessions}


def fuzz(address, ports, lines, seed, budget, user, password):
    """
    C{lines} random and truncated command lines to each of SMTP, POP3 and
    IMAP (in sessions of 20), as many again to POP3 and IMAP logged in as
    C{user} after STLS/STARTTLS (in sessions of 50), and as many malformed
    DNS packets over UDP, each pass bounded by C{budget} seconds.  Print how many of each
    went out and how long each took.
    """
    lines, budget = int(lines), float(budget)
    rng = random.Random(int(seed))
    report = {}
    for name in ("smtp", "pop3", "imap"):
        started = time.monotonic()
        sent, replies = _fuzzStream(address, ports[name], rng, VALID[name], lines, 20, budget)
        report[name] = {"sent": sent, "replies": replies, "seconds": round(time.monotonic() - started, 2)}
    for name in ("pop3", "imap"):
        started = time.monotonic()
        report[name + " logged in"] = _fuzzLoggedIn(name, address, ports[name], rng, lines, 50, budget, user, password)
        report[name + " logged in"]["seconds"] = round(time.monotonic() - started, 2)
    started = time.monotonic()
    query = bytes.fromhex("15aa01000001000000000000") + b"\x04smtp\x09domaineel\x02rt\x00\x00\x0f\x00\x01"
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sent = replies = 0
    deadline = started + budget
    while sent < lines and time.monotonic() < deadline:
        kind = rng.random()
        if kind < 0.4:
            packet = query[: rng.randrange(len(query))]
        elif kind < 0.7:
            packet = bytes(rng.randrange(256) for _ in range(rng.randrange(512)))
        else:
            # A well-formed header with lying counts, or a compression
            # pointer loop, in front of a real question.
            packet = bytearray(query)
            packet[rng.randrange(4, 12)] = rng.randrange(256)
            if rng.random() < 0.5:
                packet[12:14] = b"\xc0\x0c"
            packet = bytes(packet)
        try:
            sock.sendto(packet, (address, ports["dns"]))
        except BlockingIOError:
            time.sleep(0.01)
        sent += 1
        try:
            while sock.recv(4096):
                replies += 1
        except OSError:
            pass
    sock.close()
    # Few replies is right: most packets cannot be answered (RFC 1035
    # 4.1.1 FORMERR needs a readable header) and rate limiting drops more.
    report["dns"] = {"sent": sent, "replies": replies, "seconds": round(time.monotonic() - started, 2)}
    print(json.dumps(report))


def main(argv):
    name, address = argv[0], argv[1]
    ports = dict(zip(NAMES, map(int, argv[2:2 + len(NAMES)])))
    {"burst": burst, "plaintext": plaintext, "fuzz": fuzz, "seedimap": seedimap}[name](address, ports, *argv[2 + len(NAMES):])


if __name__ == "__main__":
    main(sys.argv[1:])
