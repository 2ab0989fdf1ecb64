"""
The mailbox commands of the authenticated state: LIST and LSUB (RFC 3501
6.3.8-9 with C{%} and C{*}, RFC 5258 LIST-EXTENDED, RFC 5819 LIST-STATUS,
RFC 6154 SPECIAL-USE, RFC 3348 CHILDREN), CREATE, DELETE, RENAME (RFC 3501
6.3.3-5), SUBSCRIBE/UNSUBSCRIBE, STATUS (with RFC 8438 SIZE), NAMESPACE
(RFC 2342) and APPEND (RFC 3501 6.3.11, RFC 3502 MULTIAPPEND, RFC 4315
APPENDUID, RFC 7889 APPENDLIMIT).

Mixed into L{twisted_maillab.imap.server.IMAPServer}.
"""

from __future__ import annotations

import re

from twisted.internet import defer

from twisted_maillab.imap import response as R
from twisted_maillab.imap.binaryappend import storableBinary
from twisted_maillab.store.errors import (
    InvalidMailboxName,
    MailboxExists,
    MailboxNotFound,
    QuotaExceeded,
)
from twisted_maillab.store.mailboxes import CREATABLE_SPECIAL_USES
from twisted_maillab.store.reading import virtualSizes

__all__ = ["MailboxCommands", "patternMatcher"]

SEPARATOR = "/"
STATUS_ITEMS = ("MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "SIZE")


def patternMatcher(reference: str, pattern: str):
    """
    RFC 3501 6.3.8: the reference and the pattern joined, C{*} matching
    anything and C{%} anything but the hierarchy separator; INBOX in any
    case matches INBOX.

    @return: a function C{name -> bool}.
    """
    full = reference + pattern
    regex = ""
    for char in full:
        if char == "*":
            regex += ".*"
        elif char == "%":
            regex += "[^" + re.escape(SEPARATOR) + "]*"
        else:
            regex += re.escape(char)
    exact = re.compile(regex + r"\Z", re.DOTALL)
    anyCase = re.compile(regex + r"\Z", re.DOTALL | re.IGNORECASE)

    def match(name: str) -> bool:
        if exact.match(name):
            return True
        # INBOX is case-insensitive (RFC 3501 5.1), its children's names
        # are not: only the first level is compared without case.
        if name.upper() == "INBOX":
            return bool(anyCase.match(name))
        return False

    return match


class MailboxCommands:
    """
    LIST, LSUB, CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, STATUS,
    NAMESPACE, APPEND.
    """

    # -- LIST / LSUB ---------------------------------------------------

    def do_LIST(self, command):
        return defer.ensureDeferred(self._list(command, lsub=False))

    def do_LSUB(self, command):
        return defer.ensureDeferred(self._list(command, lsub=True))

    async def _list(self, command, lsub: bool):
        args = command.args
        if not lsub and len(args.patterns) == 1 and args.patterns[0] == "" and not args.extended:
            # RFC 3501 6.3.8: the hierarchy delimiter and root.
            self.write(R.listResponse("", ["\\Noselect"], SEPARATOR))
            return self.ok(command)
        mailboxes = self.avatar.mailboxes
        infos = await mailboxes.list()
        subscribed = set(await mailboxes.subscriptions())
        matchers = [patternMatcher(args.reference, p) for p in args.patterns if p is not None]
        select = args.selectOptions
        returns = args.returnOptions
        onlySubscribed = lsub or "SUBSCRIBED" in select
        showSubscribed = "SUBSCRIBED" in select or "SUBSCRIBED" in returns
        specialOnly = "SPECIAL-USE" in select
        showSpecial = True  # RFC 6154 2: servers SHOULD show them always
        byName = {info.name: info for info in infos}
        names = [info.name for info in infos]
        if onlySubscribed:
            # Subscribed names that no longer exist are listed too
            # (\NonExistent, RFC 5258 3.1).
            names += sorted(n for n in subscribed if n not in byName)
        out = []
        statusFor = []
        for name in names:
            if not any(m(name) for m in matchers):
                continue
            info = byName.get(name)
            isSubscribed = name in subscribed or (name.upper() == "INBOX" and "INBOX" in subscribed)
            extended = None
            if onlySubscribed and not isSubscribed:
                prefix = name + SEPARATOR
                below = [n for n in subscribed if n.startswith(prefix)]
                if not below:
                    continue
                if "RECURSIVEMATCH" in select:
                    # RFC 5258 3.5: a parent listed for its subscribed
                    # children, only those the patterns do not list
                    # themselves (as Dovecot).
                    if all(any(m(n) for m in matchers) for n in below):
                        continue
                    extended = b'("CHILDINFO" ("SUBSCRIBED"))'
                elif lsub and not any(m(n) for n in below for m in matchers):
                    # RFC 3501 6.3.9: LSUB with % shows the level above a
                    # subscribed name it does not reach, as \Noselect.
                    out.append(R.listResponse(name, ["\\Noselect"], SEPARATOR, command=b"LSUB"))
                    continue
                else:
                    continue
            if specialOnly and (info is None or not info.specialUse):
                continue
            attributes = []
            exists = info is not None and info.exists
            if lsub:
                if not exists:
                    attributes.append("\\Noselect")
            elif info is None:
                attributes.append("\\NonExistent")
            elif not exists:
                attributes += ["\\NonExistent", "\\Noselect"] if args.extended else ["\\Noselect"]
            if info is not None and not lsub:
                attributes.append("\\HasChildren" if info.hasChildren else "\\HasNoChildren")
            if showSubscribed and isSubscribed and not lsub:
                attributes.append("\\Subscribed")
            if showSpecial and info is not None and info.specialUse and not lsub:
                attributes.append(info.specialUse)
            out.append(R.listResponse(name, attributes, SEPARATOR, command=b"LSUB" if lsub else b"LIST", extended=extended))
            if args.statusItems and exists:
                statusFor.append((len(out), name))
        if statusFor:
            # RFC 5819: each STATUS right after its LIST.
            merged = []
            index = 0
            for position, name in statusFor:
                merged += out[index:position]
                index = position
                try:
                    merged.append(await self._statusLine(name, args.statusItems))
                except MailboxNotFound:
                    pass
            merged += out[index:]
            out = merged
        self.write(b"".join(out))
        self.ok(command)

    # -- CREATE / DELETE / RENAME ------------------------------------------

    def do_CREATE(self, command):
        name = command.args.mailbox.rstrip(SEPARATOR)
        if not name:
            return self.no(command, b"Invalid mailbox name", R.CANNOT)
        if name.upper() == "INBOX":
            return self.no(command, b"INBOX already exists", R.ALREADYEXISTS)
        mailboxes = self.avatar.mailboxes
        role = None
        use = command.args.specialUse
        if use:
            # RFC 6154 3: a role we cannot give is NO [USEATTR], and the
            # mailbox is not created
            configured = mailboxes.specialUse(name)
            if len(set(use)) > 1:
                return self.no(command, b"One special-use attribute per mailbox", b"USEATTR")
            if configured is not None and configured != use[0]:
                # the configuration's roles win
                text = f"The configuration makes {name} {configured}".encode("utf-8")
                return self.no(command, text, b"USEATTR")
            if use[0] not in CREATABLE_SPECIAL_USES:
                return self.no(command, use[0].encode("ascii") + b" is not supported", b"USEATTR")
            role = None if configured == use[0] else use[0]
        d = mailboxes.create(name, role)

        def failed(failure):
            error = failure.trap(MailboxExists, InvalidMailboxName)
            if error is MailboxExists:
                self.no(command, b"Mailbox already exists", R.ALREADYEXISTS)
            else:
                self.no(command, str(failure.value).encode("utf-8", "replace"), R.CANNOT)

        return d.addCallbacks(lambda _: self.ok(command), failed)

    def do_DELETE(self, command):
        return defer.ensureDeferred(self._delete(command))

    async def _delete(self, command):
        name = command.args.mailbox
        if name.upper() == "INBOX":
            return self.no(command, b"INBOX cannot be deleted", R.CANNOT)
        mailboxes = self.avatar.mailboxes
        infos = {info.name: info for info in await mailboxes.list()}
        info = infos.get(name)
        if info is None:
            return self.no(command, b"Mailbox does not exist", R.NONEXISTENT)
        if not info.exists:
            # RFC 3501 6.3.4: a \Noselect name with inferiors cannot be
            # deleted.
            return self.no(command, b"Mailbox has children and is not selectable", R.INUSE)
        if self.view is not None and self.view.folder.name == name:
            self.closeMailbox()
        try:
            await mailboxes.delete(name)
        except MailboxNotFound:
            return self.no(command, b"Mailbox does not exist", R.NONEXISTENT)
        self.ok(command)

    def do_RENAME(self, command):
        old, new = command.args.old, command.args.new.rstrip(SEPARATOR)
        if new.upper() == "INBOX":
            return self.no(command, b"INBOX already exists", R.ALREADYEXISTS)
        d = self.avatar.mailboxes.rename(old, new)

        def failed(failure):
            error = failure.trap(MailboxExists, MailboxNotFound, InvalidMailboxName)
            if error is MailboxExists:
                self.no(command, b"Mailbox already exists", R.ALREADYEXISTS)
            elif error is MailboxNotFound:
                self.no(command, b"Mailbox does not exist", R.NONEXISTENT)
            else:
                self.no(command, str(failure.value).encode("utf-8", "replace"), R.CANNOT)

        return d.addCallbacks(lambda _: self.ok(command), failed)

    def do_SUBSCRIBE(self, command):
        # RFC 3501 6.3.6 allows subscribing to names that do not exist.
        return self.avatar.mailboxes.subscribe(command.args.mailbox).addCallback(lambda _: self.ok(command))

    def do_UNSUBSCRIBE(self, command):
        return self.avatar.mailboxes.unsubscribe(command.args.mailbox).addCallback(lambda _: self.ok(command))

    def do_NAMESPACE(self, command):
        # RFC 2342: one personal namespace, "" with "/".
        self.write(R.namespaceResponse())
        self.ok(command)

    # -- STATUS ----------------------------------------------------------

    def do_STATUS(self, command):
        return defer.ensureDeferred(self._status(command))

    async def _status(self, command):
        try:
            line = await self._statusLine(command.args.mailbox, command.args.items)
        except MailboxNotFound:
            return self.no(command, b"Mailbox does not exist", R.NONEXISTENT)
        self.write(line)
        self.ok(command)

    async def _statusLine(self, name: str, items) -> bytes:
        folder = await self.avatar.mailboxes.open(name)
        try:
            if self.view is None or self.view.folder is not folder:
                await folder.refresh()
            values = []
            for item in items:
                if item == "MESSAGES":
                    values.append((item, len(folder)))
                elif item == "RECENT":
                    values.append((item, len(folder.recentUids())))
                elif item == "UIDNEXT":
                    values.append((item, folder.uidNext))
                elif item == "UIDVALIDITY":
                    values.append((item, folder.uidValidity))
                elif item == "UNSEEN":
                    values.append((item, folder.unseenCount()))
                elif item == "SIZE":
                    sizes = await virtualSizes(folder, list(folder.uids()))
                    values.append((item, sum(sizes.values())))
            return R.statusResponse(name, values)
        finally:
            folder.close()

    # -- APPEND --------------------------------------------------------------

    def do_APPEND(self, command):
        return defer.ensureDeferred(self._append(command))

    async def _append(self, command):
        args = command.args
        try:
            sources = self.appendSources(args)
        except OSError:
            return self.no(command, b"Cannot store the message now", R.SERVERBUG)
        try:
            await self._appendAll(command, args, sources)
        finally:
            for source in sources:
                if hasattr(source, "close"):
                    source.close()

    async def _appendAll(self, command, args, sources):
        for source in sources:
            if isinstance(source, bytes) and len(source) > self.factory.appendLimit:
                return self.no(command, b"Message too big", R.TOOBIG)
        try:
            folder = await self.avatar.mailboxes.open(args.mailbox)
        except MailboxNotFound:
            # RFC 3501 6.3.11
            return self.no(command, b"Mailbox does not exist", R.TRYCREATE)
        uids = []
        try:
            for message, source in zip(args.messages, sources):
                flags = [f for f in message.flags if f.lower() != "\\recent"]
                date = message.internalDate.timestamp() if message.internalDate is not None else None
                if message.binary:
                    # RFC 3516 4.3: binary parts are stored base64-encoded
                    stored = await folder.store.run(storableBinary, source)
                else:
                    stored = source
                try:
                    uids.append(await folder.append(stored, flags, date))
                finally:
                    if stored is not source:
                        stored.close()
        except QuotaExceeded as e:
            return self.no(command, e.message.encode("utf-8", "replace"), R.OVERQUOTA)
        finally:
            validity = folder.uidValidity
            folder.close()
        self.ok(command, b"APPEND completed", R.codeAppendUid(validity, uids))
