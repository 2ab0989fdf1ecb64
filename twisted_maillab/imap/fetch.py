"""
FETCH and UID FETCH (RFC 3501 6.4.5, 7.4.2; BINARY and BINARY.SIZE from
RFC 3516).

What the index knows (FLAGS, UID, INTERNALDATE, sizes) is answered on the
reactor thread; everything that needs the message's MIME structure is
computed by L{twisted_maillab.imap.structure} in the store's thread pool
(files opened there too), one round trip per batch of messages, and the
parsed structure is cached per
message (it holds offsets, never body bytes).  Section contents up to
L{INLINE_SIZE} are read in that same round trip; bigger ones are streamed
from the file in chunks of at most 64 KiB, one thread round trip per
chunk, and only while the transport wants more (a push producer registered
for the command's duration): a client that does not read holds one chunk
and the transport's buffer, never the message.

A body fetch without C{.PEEK} sets C{\\Seen} first (RFC 3501 6.4.5) and
reports the new FLAGS in the same FETCH response, as Dovecot does.  A
message expunged by another session or program meanwhile is left out and
the command ends C{OK [EXPUNGEISSUED]} (RFC 5530), as Dovecot's does.
"""

from __future__ import annotations

from collections import OrderedDict

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from twisted_maillab.imap import response as R
from twisted_maillab.imap import structure
from twisted_maillab.imap.parser import FetchAtt, Section
from twisted_maillab.store.errors import MessageVanished, StoreError
from twisted_maillab.store.reading import virtualSizes

__all__ = ["FetchCommands", "StructureCache", "INLINE_SIZE", "sectionSpec"]

# Sections up to this size are read with the structure, in one round trip.
INLINE_SIZE = 256 * 1024
# Index-only FETCH responses are written in batches of this many messages
# (then the transport's flow control is consulted).
_BATCH = 256
# Messages parsed per thread-pool round trip, and the inline data one
# round trip may read before it returns.
_PARSE_BATCH = 64
_BATCH_BYTES = 1024 * 1024

_STRUCTURE_ITEMS = frozenset({"ENVELOPE", "BODYSTRUCTURE", "RFC822", "RFC822.HEADER", "RFC822.TEXT", "BINARY", "BINARY.SIZE"})
_SETS_SEEN = frozenset({"RFC822", "RFC822.TEXT"})


class StructureCache:
    """
    Parsed L{structure.Message}s by (Maildir folder, UIDVALIDITY, UID),
    least recently used dropped first.  A message's file never changes
    under one UID (Maildir files are written once), so entries need no
    invalidation.
    """

    def __init__(self, size: int = 4096):
        self.size = size
        self._entries: OrderedDict = OrderedDict()

    def get(self, key):
        message = self._entries.get(key)
        if message is not None:
            self._entries.move_to_end(key)
        return message

    def put(self, key, message) -> None:
        self._entries[key] = message
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


def sectionSpec(section: Section | None) -> str:
    """
    The structure module's section text for a parsed section:
    C{"1.2.MIME"}, C{"HEADER.FIELDS"}, C{""}.
    """
    if section is None:
        return ""
    bits = [str(p) for p in section.part]
    if section.text:
        bits.append(section.text)
    return ".".join(bits)


def _needsStructure(item: FetchAtt) -> bool:
    return item.name in _STRUCTURE_ITEMS or item.name == "BODY"


def _setsSeen(item: FetchAtt) -> bool:
    if item.name in _SETS_SEEN:
        return True
    return item.name in ("BODY", "BINARY") and item.section is not None and not item.peek


class _Streamed:
    """
    A section too big to read with the structure: sent by L{_Flow} in
    chunks.
    """

    __slots__ = ("size", "chunks", "literal8")

    def __init__(self, size, chunks, literal8=False):
        self.size = size
        self.chunks = chunks
        self.literal8 = literal8


def _prepareBatch(openFile, entries, items):
    """
    Thread: for each C{(uid, cached structure or None)} in turn, open the
    message with C{openFile(uid) -> (file, relocated)} and L{_prepare} it,
    until the inline data read passes L{_BATCH_BYTES} (the rest waits for
    the next round trip, so one batch holds a bounded amount of memory).
    Opening here rather than on the reactor thread spares it three system
    calls per message, each a chance to wait for the GIL behind a pool
    thread.

    @return: per message, L{None} if it vanished (expunged by another
        program, or its file is no longer safe to read), else C{(message,
        values, file, relocated)} where C{file} is still open only when a
        section is streamed from it (the caller closes it then).
    """
    results = []
    total = 0
    try:
        for uid, cached in entries:
            try:
                f, relocated = openFile(uid)
            except StoreError:
                results.append(None)
                continue
            try:
                message, values = _prepare(f, cached, items)
            except BaseException:
                f.close()
                raise
            if not any(isinstance(v, _Streamed) for v in values):
                f.close()
                f = None
            results.append((message, values, f, relocated))
            total += sum(len(v) for v in values if isinstance(v, bytes))
            if total > _BATCH_BYTES:
                break
    except BaseException:
        _closeAll(results)
        raise
    return results


def _closeAll(results) -> None:
    # the files kept open for streaming, when they will not be streamed
    for result in results:
        if result is not None and result[2] is not None:
            result[2].close()


def _prepare(f, message, items):
    """
    Thread: parse the message (unless cached) and compute every item that
    needs it.  Returns C{(message, values)} with one value per item: bytes
    already formatted, a L{_Streamed}, or L{None} for index items.
    """
    if message is None:
        f.seek(0)
        message = structure.parse(f)
    values = []
    for item in items:
        name = item.name
        if name == "ENVELOPE":
            values.append(structure.render(message.envelope()))
        elif name == "BODYSTRUCTURE":
            values.append(structure.render(message.bodystructure(True)))
        elif name == "BODY" and item.section is None:
            values.append(structure.render(message.bodystructure(False)))
        elif name in ("BODY", "RFC822", "RFC822.HEADER", "RFC822.TEXT"):
            if name == "BODY":
                spec, fields = sectionSpec(item.section), item.section.fields
            else:
                spec, fields = {"RFC822": "", "RFC822.HEADER": "HEADER", "RFC822.TEXT": "TEXT"}[name], ()
            section = message.section(f, spec, fields or None)
            size = section.sizeFor(item.partial)
            if size <= INLINE_SIZE:
                values.append(R.literalPrefix(size) + b"".join(section.chunks(f, item.partial)))
            else:
                values.append(_Streamed(size, section.chunks(f, item.partial)))
        elif name in ("BINARY", "BINARY.SIZE"):
            binary = message.binary(sectionSpec(item.section))
            total = binary.size(f)
            if name == "BINARY.SIZE":
                values.append(b"%d" % total)
                continue
            size = total
            if item.partial is not None:
                start, count = item.partial
                size = max(0, min(count, total - start))
            if size <= INLINE_SIZE:
                data = b"".join(binary.chunks(f, item.partial))
                # RFC 3516 4.2: a literal8 for decoded content or NULs, a
                # plain literal otherwise (as Dovecot answers).
                literal8 = binary.decoded or b"\0" in data
                values.append((b"~" if literal8 else b"") + R.literalPrefix(size) + data)
            else:
                # Not scanned ahead for NULs: only a part declared binary
                # may hold them.
                literal8 = binary.decoded or getattr(binary, "encoding", None) == b"binary"
                values.append(_Streamed(size, binary.chunks(f, item.partial), literal8))
        else:
            values.append(None)
    return message, values


@implementer(IPushProducer)
class _Flow:
    """
    The transport's flow control for one command: L{drain} waits while
    the transport asked us to pause.
    """

    def __init__(self, transport):
        self.transport = transport
        self.paused = False
        self.stopped = False
        self._waiter = None
        transport.registerProducer(self, True)

    def drain(self):
        if not self.paused or self.stopped:
            return defer.succeed(None)
        if self._waiter is None:
            self._waiter = defer.Deferred()
        return self._waiter

    def _wake(self):
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.callback(None)

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False
        self._wake()

    def stopProducing(self):
        self.stopped = True
        self._wake()

    def unregister(self):
        if not self.stopped:
            self.transport.unregisterProducer()
        self.stopped = True


class FetchCommands:
    """
    FETCH / UID FETCH, mixed into the server.
    """

    def do_FETCH(self, command):
        return defer.ensureDeferred(self._fetch(command))

    async def _fetch(self, command):
        args = command.args
        pairs = self.messages(command, args.sequenceSet)
        if pairs is None:
            return
        view = self.view
        folder = view.folder
        items = list(args.items)
        names = {item.name for item in items}
        if command.uid and "UID" not in names:
            # RFC 3501 6.4.8: UID FETCH always reports the UID.
            items.insert(0, FetchAtt("UID"))
            names.add("UID")
        needStructure = any(_needsStructure(item) for item in items)
        if "FLAGS" in names:
            self.write(self.keywordUpdate())
        uids = [uid for _, uid in pairs if not view.gone(uid)]
        gone = len(uids) < len(pairs)

        seenNow: set[int] = set()
        if not self.readOnly and any(_setsSeen(item) for item in items):
            unseen = []
            for uid in uids:
                try:
                    if "\\Seen" not in folder.flags(uid):
                        unseen.append(uid)
                except MessageVanished:
                    continue
            if unseen:
                result = await folder.setFlags(unseen, ["\\Seen"], "add", origin=view)
                seenNow = set(result)
                if self.view is not view:
                    return
        if "INTERNALDATE" in names or ("RFC822.SIZE" in names and not needStructure):
            await folder.prefetch(uids)
        sizes = {}
        if "RFC822.SIZE" in names and not needStructure:
            sizes = await virtualSizes(folder, uids)
        if self.view is not view or self.closed:
            return

        flow = _Flow(self.transport)
        try:
            gone = await self._fetchAll(command, view, pairs, items, needStructure, sizes, seenNow, flow) or gone
        except structure.UnknownCTE:
            return self.no(command, b"Unknown Content-Transfer-Encoding", b"UNKNOWN-CTE")
        except structure.SectionError as e:
            return self.bad(command, str(e).encode("utf-8", "replace"))
        finally:
            flow.unregister()
        if self.closed or self.view is not view:
            return
        if gone and not command.uid:
            # RFC 5530 EXPUNGEISSUED: the sequence numbers named a message
            # someone else expunged; the others were sent, so OK with the
            # code, as Dovecot answers (a NO would fail the client's whole
            # fetch).  A UID FETCH just leaves it out (RFC 3501 6.4.8).
            return self.ok(command, b"Some messages were already expunged", R.EXPUNGEISSUED)
        self.ok(command)

    async def _fetchAll(self, command, view, pairs, items, needStructure, sizes, seenNow, flow) -> bool:
        if needStructure:
            return await self._fetchParsed(view, pairs, items, sizes, seenNow, flow)
        folder = view.folder
        gone = False
        batch = []
        for seq, uid in pairs:
            if self.closed or self.view is not view:
                return gone
            if view.gone(uid):
                gone = True
                continue
            try:
                batch.append(self._response(seq, uid, folder, items, None, None, sizes, seenNow))
            except MessageVanished:
                gone = True
                continue
            if len(batch) >= _BATCH:
                self.write(b"".join(batch))
                batch = []
                await flow.drain()
        if batch:
            self.write(b"".join(batch))
        return gone

    async def _fetchParsed(self, view, pairs, items, sizes, seenNow, flow) -> bool:
        """
        Messages whose structure is needed: opened, parsed and read in the
        pool a batch at a time.
        """
        folder = view.folder
        cache = self.factory.structures
        gone = False
        todo = list(reversed(pairs))
        while todo:
            if self.closed or self.view is not view:
                return gone
            batch = []
            while todo and len(batch) < _PARSE_BATCH:
                seq, uid = todo.pop()
                if view.gone(uid):
                    gone = True
                    continue
                batch.append((seq, uid, (folder.mailboxes.path, folder.name, folder.uidValidity, uid)))
            if not batch:
                break
            results = await folder.store.run(
                _prepareBatch, folder.openMessageInThread, [(uid, cache.get(key)) for _, uid, key in batch], items
            )
            # What the pool did not get to (its output budget was spent)
            # goes first into the next batch.
            for seq, uid, _ in reversed(batch[len(results):]):
                todo.append((seq, uid))
            if any(result is None or result[3] for result in results):
                # a file vanished or was renamed by another program
                folder.filesMoved()
            out = []
            for i, ((seq, uid, key), result) in enumerate(zip(batch, results)):
                if result is None:
                    gone = True
                    continue
                message, values, f, _ = result
                cache.put(key, message)
                if f is not None:
                    if out:
                        self.write(b"".join(out))
                        out = []
                    try:
                        await self._stream(seq, uid, folder, items, values, message, sizes, seenNow, flow)
                    finally:
                        folder.store.run(f.close)
                    if self.closed or self.view is not view:
                        folder.store.run(_closeAll, results[i + 1 :])
                        return gone
                    continue
                try:
                    out.append(self._response(seq, uid, folder, items, values, message, sizes, seenNow))
                except MessageVanished:
                    gone = True
            if out:
                self.write(b"".join(out))
            await flow.drain()
        return gone

    def _itemValue(self, item, uid, folder, value, message, sizes):
        name = item.name
        if value is not None:
            return value
        if name == "UID":
            return b"%d" % uid
        if name == "FLAGS":
            return R.flags(self.flagsOf(uid))
        if name == "INTERNALDATE":
            return R.internalDate(folder.internalDate(uid))
        if name == "RFC822.SIZE":
            if message is not None:
                return b"%d" % message.size
            size = sizes.get(uid)
            if size is None:
                raise MessageVanished(f"UID {uid}")
            return b"%d" % size
        raise ValueError(f"unknown FETCH item {name}")

    def _pieces(self, uid, folder, items, values, message, sizes, seenNow):
        out = []
        for i, item in enumerate(items):
            value = values[i] if values is not None else None
            out.append((item.responseName(), value if isinstance(value, _Streamed) else self._itemValue(item, uid, folder, value, message, sizes)))
        if uid in seenNow and not any(item.name == "FLAGS" for item in items):
            out.append((b"FLAGS", R.flags(self.flagsOf(uid))))
        return out

    def _response(self, seq, uid, folder, items, values, message, sizes, seenNow) -> bytes:
        return R.fetchResponse(seq, self._pieces(uid, folder, items, values, message, sizes, seenNow))

    async def _stream(self, seq, uid, folder, items, values, message, sizes, seenNow, flow):
        """
        One FETCH response with big sections sent chunk by chunk.
        """
        pieces = self._pieces(uid, folder, items, values, message, sizes, seenNow)
        self.streaming = True
        try:
            await self._streamPieces(seq, folder, pieces, flow)
        finally:
            self.streaming = False

    async def _streamPieces(self, seq, folder, pieces, flow):
        head = b"* %d FETCH (" % seq
        for i, (name, value) in enumerate(pieces):
            head += (b" " if i else b"") + name + b" "
            if not isinstance(value, _Streamed):
                head += value
                continue
            self.write(head + (b"~" if value.literal8 else b"") + R.literalPrefix(value.size))
            head = b""
            sent = 0
            while sent < value.size:
                chunk = await folder.store.run(next, value.chunks, b"")
                if not chunk:
                    break
                chunk = chunk[: value.size - sent]
                sent += len(chunk)
                self.write(chunk)
                self.engine.resetTimeout()
                await flow.drain()
                if self.closed:
                    return
            if sent < value.size:
                # The file shrank under us (it cannot in a Maildir, but the
                # literal must have the octets it announced).
                self.write(b" " * (value.size - sent))
        self.write(head + b")\r\n")
