"""Capture-file formats: classic pcap and pcapng, read from a binary stream, and written.

Reading
-------
``open_capture(stream)`` sniffs the first bytes of a binary stream (anything with ``read(n)``; it
is never seeked, so pipes and decompressing streams work) and returns a reader.  Anything that is
not a capture raises :class:`DissectError` naming what it looks like instead.

``reader.records()`` yields one plain tuple per record, in file order::

    (ts, linktype, data, wirelen, offset, iface)

``ts`` is float seconds since the epoch, correctly rounded from the integer tick count (the
interface's ``if_tsresol``/``if_tsoffset`` applied), so ``'%.6f' % ts`` matches tshark's
``frame.time_epoch`` to the microsecond.  ``offset`` is the byte offset of the pcap record header or
pcapng block in the stream; ``iface`` the global interface index over all pcapng sections (0 for
classic pcap).

A few pcapng blocks carry no packet but are still numbered as frames by Wireshark (custom blocks
0x00000BAD / 0x40000BAD, systemd journal export, sysdig events).  They are yielded with
``linktype == NONPACKET`` (-1) and ``iface == -1`` so that a frame counter can stay in step with
Wireshark's numbering; consumers that only want packets skip them.  A Simple Packet Block has no
timestamp (Wireshark shows none): it is given the timestamp of the previous record of the file.

Problems after the file header never raise: they are damage, listed in ``reader.damage``
(:class:`Damage`: byte range, records lost, reason, neighbouring timestamps) and, one line each,
in ``reader.warnings`` (``(offset, reason)``), and reading goes on:

* bytes that are not a record (an impossible captured length, a pcapng block whose length or
  trailer is wrong: garbage, a hole, a second file header) are skipped up to the next offset where
  a chain of valid records starts (:mod:`dissect.vpn.chain`); the range uses no frame number;
* a pcapng block framed right but unusable (undeclared interface, captured length past its
  block, simple packet block before any interface, malformed options) is skipped alone;
* a record Wireshark shows but that holds nothing to analyse - a pcap record of time 0 with no
  byte captured (what a zero-filled hole reads as), a pcapng packet whose timestamp is outside
  [0, ``TS_LIMIT``) - is yielded as a ``NONPACKET`` record, so that frame numbers stay
  Wireshark's;
* the data ending inside a record (a file cut short) is damage at the end.

Frame numbers are Wireshark's up to the first range it cannot read past (Wireshark stops there);
after it they are the numbers Wireshark gives to the same file with the unreadable ranges cut out.

The stream is read in ``CHUNK`` pieces; memory is bounded by one chunk plus the largest record.

Writing
-------
``PcapngWriter`` (SHB, IDB, EPB with ``opt_comment``, ISB) and ``PcapWriter`` (classic pcap).
"""

from __future__ import annotations

import struct

from dissect.vpn import fast as _fast
from dissect.vpn.errors import DissectError
from dissect.vpn.link import COOKED_LINKTYPES, cooked_info

__all__ = [
    "BATCH_RECORDS",
    "CHUNK",
    "Damage",
    "NONPACKET",
    "MAX_RECORD",
    "TS_LIMIT",
    "Interface",
    "PcapReader",
    "PcapngReader",
    "PcapWriter",
    "PcapngWriter",
    "open_capture",
]

CHUNK = 1 << 20
#: bytes per chunk of the batched walk (PcapReader.walk with ``on_batch``)
BATCH_CHUNK = 8 << 20
NONPACKET = -1
MAX_RECORD = 256 << 20  # no sane record is bigger: a bigger length means garbage

# pcap magics as read little-endian from the first four bytes
_PCAP_USEC = 0xA1B2C3D4
_PCAP_NSEC = 0xA1B23C4D
_PCAP_MODIFIED = 0xA1B2CD34
_SHB = 0x0A0D0D0A
_BOM = 0x1A2B3C4D

_B_IDB = 1
_B_PB = 2
_B_SPB = 3
_B_NRB = 4
_B_ISB = 5
_B_EPB = 6
_B_JOURNAL = 9
_B_DSB = 0x0A
# blocks Wireshark turns into frames although they carry no packet
_NUMBERED = frozenset((0x00000BAD, 0x40000BAD, _B_JOURNAL, 0x204, 0x216, 0x221))

_ISB_COUNTERS = {4: "ifrecv", 5: "ifdrop", 6: "filteraccept", 7: "osdrop", 8: "usrdeliv"}

# formats that are not pcap/pcapng but are met in the wild: prefix -> what to tell the user
_LOOKALIKES = (
    (b"\x34\xcd\xb2\xa1", "a 'modified' (Kuznetzov patched libpcap) pcap, magic a1b2cd34"),
    (b"\xa1\xb2\xcd\x34", "a 'modified' (Kuznetzov patched libpcap) pcap, magic a1b2cd34"),
    (b"\xac\x01\x00\x1c", "an Ixia/Catapult modified pcap (magic 1c0001ac)"),
    (b"\x1c\x00\x01\xac", "an Ixia/Catapult modified pcap (magic 1c0001ac)"),
    (b"\xab\x01\x00\x1c", "an Ixia/Catapult modified pcap (magic 1c0001ab)"),
    (b"\x1c\x00\x01\xab", "an Ixia/Catapult modified pcap (magic 1c0001ab)"),
    (b"\x1f\x8b", "gzip-compressed data (decompress it first)"),
    (b"BZh", "bzip2-compressed data (decompress it first)"),
    (b"\xfd7zXZ\x00", "xz-compressed data (decompress it first)"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data (decompress it first)"),
    (b"\x04\x22\x4d\x18", "lz4-compressed data (decompress it first)"),
    (b"PK\x03\x04", "a zip archive (extract the capture first)"),
    (b"snoop\x00\x00\x00", "a Solaris snoop capture"),
    (b"RTSS", "a Microsoft Network Monitor 1.x capture"),
    (b"GMBU", "a Microsoft Network Monitor 2.x capture"),
    (b"XCP\x00", "a NetXray / Sniffer capture"),
    (b"TRSNIFF", "a Sniffer capture"),
    (b"iptrace", "an AIX iptrace capture"),
    (b"btsnoop\x00", "a btsnoop capture"),
    (b"ObserverPktBuffer", "a Network Instruments Observer capture"),
    (b"<?xml", "an XML document"),
    (b"{", "a JSON document"),
)
_CONVERT_HINT = "; convert it with 'editcap -F pcapng IN OUT'"


def _read_exact(stream, n: int) -> bytes:
    """Read up to ``n`` bytes, looping over short reads; fewer only at end of stream."""
    data = stream.read(n)
    if data is None:
        data = b""
    while len(data) < n:
        more = stream.read(n - len(data))
        if not more:
            break
        data += more
    return bytes(data)


def _what_is(head: bytes) -> str:
    for prefix, name in _LOOKALIKES:
        if head.startswith(prefix):
            return name
    return ""


def _units(tsresol: int) -> int:
    """Ticks per second for a pcapng ``if_tsresol`` byte."""
    if tsresol & 0x80:
        return 1 << (tsresol & 0x7F)
    return 10 ** tsresol


class Interface:
    """One capture interface: a pcapng IDB, or the classic pcap file header.

    ``tsresol`` is the raw ``if_tsresol`` byte (6 = microseconds, 9 = nanoseconds, 0x94 = 2^-20),
    ``units`` the ticks per second it means, ``tsoffset`` seconds added to every timestamp,
    ``fcslen`` the FCS bytes at the end of each frame when the file says so (else ``None``),
    ``section`` the pcapng section number (0-based).
    """

    __slots__ = ("linktype", "snaplen", "tsresol", "tsoffset", "name", "units", "fcslen",
                 "section", "description")

    def __init__(self, linktype, snaplen, tsresol=6, tsoffset=0, name=None, fcslen=None,
                 section=0, description=None):
        self.linktype = linktype
        self.snaplen = snaplen
        self.tsresol = tsresol
        self.units = _units(tsresol)
        self.tsoffset = tsoffset
        self.name = name
        self.fcslen = fcslen
        self.section = section
        self.description = description

    def __repr__(self):
        return (f"Interface(linktype={self.linktype}, snaplen={self.snaplen}, "
                f"tsresol={self.tsresol:#x}, tsoffset={self.tsoffset}, name={self.name!r})")

    def __eq__(self, other):
        if not isinstance(other, Interface):
            return NotImplemented
        return all(getattr(self, a) == getattr(other, a) for a in self.__slots__)

    __hash__ = None


def open_capture(stream):
    """Return a :class:`PcapReader` or :class:`PcapngReader` for a binary stream.

    Reads the file header (pcap) or first Section Header Block (pcapng); raises
    :class:`DissectError` when the stream is not a capture this module reads.
    """
    head = _read_exact(stream, 4)
    if len(head) < 4:
        if not head:
            raise DissectError("empty file: not a pcap or pcapng capture", 0)
        raise DissectError(f"file too short ({len(head)} bytes) for a capture header", 0)
    if head == b"\x0a\x0d\x0d\x0a":
        return PcapngReader(stream, head)
    magic_le = struct.unpack("<I", head)[0]
    magic_be = struct.unpack(">I", head)[0]
    for magic, order in ((magic_le, "<"), (magic_be, ">")):
        if magic in (_PCAP_USEC, _PCAP_NSEC):
            return PcapReader(stream, head, order, magic == _PCAP_NSEC)
    more = _read_exact(stream, 16)
    what = _what_is(head + more)
    if what:
        hint = _CONVERT_HINT if "pcap" in what and "compressed" not in what else ""
        raise DissectError(f"not a pcap or pcapng capture: this is {what}{hint}", 0)
    raise DissectError(f"not a pcap or pcapng capture (magic {head.hex()})", 0)


#: a usable record timestamp lies in [0, TS_LIMIT) seconds since 1970: classic pcap's 32-bit
#: seconds (1970-01-01 to 2106-02-07).  A pcapng record whose 64-bit tick count, time resolution
#: or time offset puts it outside is damaged input (Wireshark shows it, with a date such as
#: year 586524 or before 1970; no report can place it in time).
TS_LIMIT = float(1 << 32)
#: records classified per array operation of the batched walk: at least this many before a
#: classification (unless the buffer ends first), at most twice as many - the walk counts records
#: per window of BATCH_RECORDS x the smallest record, never per record.  This bounds its memory
#: whatever the size of the records (the arrays hold ~250 bytes per record)
BATCH_RECORDS = 1 << 14
#: damaged ranges kept in full per reader; further ones are only counted (``damage_more``)
DAMAGE_KEEP = 1000

# "not known yet": the bytes that tell are not read yet (Damage.after)
_UNKNOWN = object()
_EMPTY = "empty record at time 0 (a zero-filled hole, not a packet)"
# offset in ticks given to an interface whose if_tsresol is out of range: every timestamp of it
# lands outside [0, TS_LIMIT) and its packets become damaged records
_UNUSABLE = 1 << 80


class Damage:
    """A damaged part of a capture: bytes that hold no record that could be analysed.

    ``offset``/``length``: the byte range in the (decompressed) stream.  ``frames``: records known
    to lie in it (their headers were readable) that were not analysed.  ``numbered``: those
    records keep their frame numbers, because Wireshark shows them (zero headers, timestamps
    out of range); otherwise the range uses no frame number (Wireshark stops reading there).
    ``reason``: what was wrong.  ``before``/``after``: timestamps of the packet records read
    just before and just after it (None: none, or not known).  ``trailing``: only damage
    follows it up to the end of the data (set at the end of the walk).  ``kind``: "unreadable"
    (no record boundary: skipped to the next valid chain of records), "records" (whole records
    that could not be used), "tail" (the data ends inside a record)."""

    __slots__ = ("offset", "length", "frames", "numbered", "reason", "before", "after",
                 "trailing", "kind")

    def __init__(self, offset, length, frames, numbered, reason, before, after, kind):
        self.offset = offset
        self.length = length
        self.frames = frames
        self.numbered = numbered
        self.reason = reason
        self.before = before
        self.after = after
        self.trailing = False
        self.kind = kind

    def __repr__(self):
        return (f"Damage(offset={self.offset}, length={self.length}, frames={self.frames}, "
                f"numbered={self.numbered}, kind={self.kind!r}, reason={self.reason!r})")

    def text(self) -> str:
        """One line for a warning list."""
        if self.kind == "tail":
            return self.reason
        if self.kind == "records":
            if self.numbered:
                return (f"{self.reason}: {self.frames} record(s) not analysed (they keep their "
                        f"frame numbers)")
            return f"{self.reason}: {self.length} bytes ({self.frames} record(s)) skipped"
        if self.trailing:
            return (f"{self.reason}: the last {self.length} bytes could not be read (no valid "
                    f"record after them)")
        return (f"{self.reason}: {self.length} bytes could not be read; reading resumed at "
                f"offset {self.offset + self.length}")


class _Reader:
    __slots__ = ("_stream", "_buf", "_base", "_started", "format", "interfaces", "isb",
                 "drops", "byteorder", "version", "walk_stats", "damage", "damage_more", "size",
                 "_pending", "cooked", "ended")

    def _init_damage(self):
        #: damaged ranges, in file order (see :class:`Damage`)
        self.damage = []
        #: beyond DAMAGE_KEEP ranges: [ranges, bytes, frames, seconds between their neighbours]
        self.damage_more = [0, 0, 0, 0.0]
        #: bytes of the stream once it has been read to its end (None before)
        self.size = None
        #: the damaged range whose ``after`` waits for the next bytes to be read
        self._pending = None
        #: Linux cooked frames (``tcpdump -i any``): ``{(interface, SLL2 interface index or None,
        #: packet type): frames}`` (dissect.vpn.link.cooked_info, PACKET_TYPES)
        self.cooked = {}

    def _cook(self, iface, linktype, data, off, end):
        info = cooked_info(linktype, data, off, end)
        if info is not None:
            key = (iface, info[0], info[1])
            self.cooked[key] = self.cooked.get(key, 0) + 1

    def _begin(self):
        if self._started:
            raise RuntimeError("records() can be iterated only once (the stream is consumed)")
        self._started = True

    @property
    def warnings(self) -> list:
        """``(offset, reason)`` of every damaged range (and a count of those not kept)."""
        out = [(d.offset, d.text()) for d in self.damage]
        more = self.damage_more
        if more[0]:
            out.append((self.damage[-1].offset + self.damage[-1].length,
                        f"{more[0]} more damaged range(s): {more[1]} bytes, {more[2]} record(s)"))
        return out

    def _note(self, offset, length, frames, numbered, reason, before, after, kind):
        """Record a damaged range (merged with the previous one when it continues it).
        ``after`` may be ``_UNKNOWN``: the record after the range is not read yet; the walk
        settles it (:meth:`_settle`) when it has read more."""
        pending = after is _UNKNOWN
        if pending:
            after = None
        self._pending = None
        d = self.damage
        if d:
            last = d[-1]
            if (last.offset + last.length == offset and last.kind == kind
                    and last.numbered == numbered and last.reason == reason):
                last.length += length
                last.frames += frames
                last.after = after
                if pending:
                    self._pending = last
                return
        if len(d) >= DAMAGE_KEEP:
            more = self.damage_more
            more[0] += 1
            more[1] += length
            more[2] += frames
            if before is not None and after is not None and after > before:
                more[3] += after - before
            return
        e = Damage(offset, length, frames, numbered, reason, before, after, kind)
        d.append(e)
        if pending:
            self._pending = e

    def _settle(self, buf, pos, n):
        """More bytes were read: the time after the pending damaged range, from the record at
        ``pos`` (the first one after it)."""
        v = self._peek(buf, pos, n)
        if v is not _UNKNOWN:
            self._pending.after = v
            self._pending = None

    def _eof(self, end):
        """The data ended at ``end``: mark the damage that runs up to it as trailing."""
        self.size = end
        self._pending = None
        cursor = end
        for d in reversed(self.damage):
            if d.offset + d.length != cursor:
                break
            d.trailing = True
            cursor = d.offset

    def _recover(self, head, offset, reason, before):
        """Reading failed at ``offset`` (``head``: the bytes from there that are already read):
        skip to the next valid chain of records (:func:`dissect.vpn.chain.resync`, reading on),
        and note the skipped range.  Returns ``(skipped, rest, eof)``."""
        from dissect.vpn import chain

        rules = self.chain_rules()
        skipped, rest, eof = chain.resync(rules, head, self._stream.read)
        times = [] if eof else rules.times(rest, 0, len(rest), 1)
        after = times[0] if times else None
        self._note(offset, skipped, 0, False, reason, before, after, "unreadable")
        return skipped, rest, eof

    def _end(self, buf, pos, n, base, before):
        """The data ends inside the record (or block) at ``pos``: one cut off, or a header whose
        length is garbage with valid records after it (:func:`dissect.vpn.chain.find` on what is
        left, at the end of the data).  Returns the position in ``buf`` where reading goes on, or
        None (damage at the end)."""
        left = n - pos
        if left > self._HEADER:
            from dissect.vpn import chain

            rules = self.chain_rules()
            found, _r = chain.find(rules, buf, pos + 1, n, True)
            if found is not None:
                times = rules.times(buf, found, n, 1)
                self._note(base + pos, found - pos, 0, False, self._runs_past(buf, pos), before,
                           times[0] if times else None, "unreadable")
                return found
        frames, reason = self._cut_off(buf, pos, n)
        self._note(base + pos, left, frames, False, reason, before, None, "tail")
        return None

    def chain_rules(self):
        """The rules of a valid record chain for this capture (:mod:`dissect.vpn.chain`): what a
        resynchronisation after damage looks for, and what a reader of a slice of the same
        capture needs to find record boundaries."""
        raise NotImplementedError

    def walk(self, tag, on_esp, on_frame, on_checkpoint=None, every=1024, on_batch=None,
             on_tcp=None):
        """Push every record instead of yielding it (the analysis hot path).

        Ethernet frames carrying ESP or UDP-4500 ESP of the common shape
        (:func:`dissect.vpn.fast.esp_at`) go to ``on_esp((tag, number), ts, 4, src, dst, sport,
        dport, spi, seq, esp_len)`` — the argument list of the ESP event of docs/internals.md —
        without a record tuple; every other record to ``on_frame(tag, number, ts, linktype, data,
        wirelen, offset, iface)`` (``iface``: the global interface index, as in :meth:`records`).  Numbers are 1-based as Wireshark's; non-packet records (and damaged
        records Wireshark numbers) use up their number.  Counters are left in ``walk_stats``:
        ``frames``, ``bytes`` (captured), ``first_ts``/``last_ts`` (earliest/latest),
        ``out_of_order``, ``truncated`` (captured < original length), ``linktypes`` (dict
        linktype -> frames).  ``on_checkpoint(number, offset)`` is called for every
        ``every``-th record (``every`` a power of two) so that frames can be found again later.

        This generic version rides on :meth:`records` and ignores ``on_batch`` and ``on_tcp``;
        :class:`PcapReader` has a copy-free one, and a batched one for ``on_batch``.
        """
        mask = every - 1 if on_checkpoint is not None else -1
        esp_at = _fast.esp_at
        esp_cooked = _fast.esp_cooked_at
        number = 0
        nbytes = 0
        trunc = 0
        tmax = float("-inf")
        tmin = float("inf")
        disorder = 0
        lts: dict = {}
        cur = None
        run = 0
        first = None
        try:
            for ts, lt, data, wirelen, offset, iface in self.records():
                number += 1
                if not number & mask:
                    on_checkpoint(number, offset)
                if lt == NONPACKET:
                    continue
                if lt != cur:
                    if run:
                        lts[cur] = lts.get(cur, 0) + run
                    cur = lt
                    run = 0
                    if first is None:
                        first = ts
                run += 1
                caplen = len(data)
                nbytes += caplen
                if wirelen > caplen:
                    trunc += 1
                if ts >= tmax:
                    tmax = ts
                else:
                    disorder += 1
                    if ts < tmin:
                        tmin = ts
                if lt == 1:
                    r = esp_at(data, 0, caplen)
                    if r is not None:
                        on_esp((tag, number), ts, 4, r[0], r[1], r[2], r[3], r[4], r[5], r[6])
                        continue
                elif lt == 276 or lt == 113:
                    r = esp_cooked(data, 0, caplen, lt)
                    if r is not None:
                        on_esp((tag, number), ts, 4, r[0], r[1], r[2], r[3], r[4], r[5], r[6])
                        continue
                on_frame(tag, number, ts, lt, data, wirelen, offset, iface)
        finally:
            if run:
                lts[cur] = lts.get(cur, 0) + run
            self.walk_stats = _walk_stats(number, nbytes, trunc, first, tmin, tmax, disorder, lts)


def _pcap_tail(left, caplen):
    """The warning for the last ``left`` bytes of a pcap file: a record cut off."""
    if left < 16:
        return f"truncated record header ({left} of 16 bytes) at end of file"
    return f"truncated record at end of file ({left - 16} of {caplen} captured bytes)"


def _pcapng_tail(left, blen):
    """The warning for the last ``left`` bytes of a pcapng file: a block cut off."""
    if left < 12:
        return f"truncated block header ({left} of 12 bytes) at end of file"
    return f"truncated block at end of file ({left} of {blen} bytes)"


def _walk_stats(number, nbytes, trunc, first, tmin, tmax, disorder, lts):
    frames = sum(lts.values())
    return {
        "frames": frames, "numbered": number, "bytes": nbytes, "truncated": trunc,
        "first_ts": min(first, tmin) if frames and first is not None else None,
        "last_ts": tmax if frames else None,
        "out_of_order": disorder, "linktypes": lts,
    }


class PcapReader(_Reader):
    """Classic libpcap format: both byte orders, micro- and nanosecond timestamps."""

    __slots__ = ("nanosecond", "snaplen", "linktype", "fcslen")

    def __init__(self, stream, head: bytes, order: str, nanosecond: bool):
        self._stream = stream
        self._started = False
        self.format = "pcap"
        self.byteorder = order
        self.nanosecond = nanosecond
        self.isb = {}
        self.drops = {}
        #: pcapng ``isb_endtime``: when the capture stopped (the latest given), else None
        self.ended = None
        self._init_damage()
        rest = _read_exact(stream, 20)
        if len(rest) < 20:
            raise DissectError(f"truncated pcap file header ({4 + len(rest)} of 24 bytes)", 0)
        major, minor, _zone, _sigfigs, snaplen, network = struct.unpack(order + "HHiIII", rest)
        if major != 2:
            raise DissectError(f"unsupported pcap version {major}.{minor}", 4)
        self.version = (major, minor)
        self.snaplen = snaplen
        self.linktype = network & 0xFFFF
        self.fcslen = ((network >> 28) & 0xF) * 2 if network & 0x04000000 else None
        self.interfaces = [Interface(self.linktype, snaplen, 9 if nanosecond else 6, 0, None,
                                     self.fcslen)]
        self._buf = b""
        self._base = 24

    def chain_rules(self):
        from dissect.vpn.chain import PcapRules

        return PcapRules(self.byteorder, self.nanosecond, self.snaplen)

    def _maxcap(self):
        """Captured lengths above this are not records (damage)."""
        snap = self.snaplen
        return MAX_RECORD if not snap else min(MAX_RECORD, max(2 * snap, 262144))

    def _corrupt(self, caplen):
        return f"corrupt record: captured length {caplen} (snaplen {self.snaplen})"

    def _implausible(self, frac, caplen):
        return (f"corrupt record: fraction of a second {frac} (captured length {caplen}), and "
                f"no record header after it")

    def _leads(self, buf, end, n, eof, maxcap):
        """A record whose header is implausible (fraction of a second >= 1 s: what almost any
        garbage has) is one only when a record header follows it: True / False, or None when
        the bytes that tell are not read yet."""
        if end + 16 <= n:
            return struct.unpack_from(self.byteorder + "8xI", buf, end)[0] <= maxcap
        return True if eof else None

    def _check(self, buf, pos, n, base, eof, before, maxcap, div):
        """The record header at ``pos`` that the walks' cheap test stopped at (its end past the
        data, an impossible captured length, a fraction of a second past one second):
        ``("ok", None)`` a record after all; ``("need", bytes)`` read on first; ``("bad",
        reason)`` not a record: resynchronise; ``("end", position or None)`` the data ends inside
        it: go on at the position :meth:`_end` found (None: nothing more)."""
        _sec, frac, caplen, _wire = struct.unpack_from(self.byteorder + "IIII", buf, pos)
        end = pos + 16 + caplen
        if caplen > maxcap:
            return "bad", self._corrupt(caplen)
        if frac >= div and not self._leads(buf, end, n, eof, maxcap):
            if not eof and end + 16 > n:
                return "need", end + 16 - n  # the next header tells
            return "bad", self._implausible(frac, caplen)
        if end > n:
            if not eof:
                return "need", end - n
            return "end", self._end(buf, pos, n, base, before)
        return "ok", None

    def _empty(self, offset, before, buf, end, n, count=1):
        """``count`` records from ``offset`` of time 0 with no byte captured (Wireshark shows them
        as empty frames of 1970; they come from zero-filled holes, not from a capture): noted as
        damage."""
        self._note(offset, 16 * count, count, True, _EMPTY, before, self._peek(buf, end, n),
                   "records")

    def _peek(self, buf, p, n):
        """The timestamp of the packet record at ``p`` (None: not a packet record; _UNKNOWN:
        its header is not read yet)."""
        if p + 16 > n:
            return _UNKNOWN
        sec, frac, cap, wire = struct.unpack_from(self.byteorder + "IIII", buf, p)
        if not (sec or frac or cap) or cap > self._maxcap():
            return None
        div = 1000000000 if self.nanosecond else 1000000
        return (sec * div + frac) / div

    _HEADER = 16

    def _runs_past(self, buf, pos):
        caplen = struct.unpack_from(self.byteorder + "8xI", buf, pos)[0]
        return f"corrupt record: captured length {caplen} runs past the end of the data"

    def _cut_off(self, buf, pos, n):
        """``(records lost, reason)`` for the data ending inside the record at ``pos``."""
        left = n - pos
        if left < 16:
            return 0, _pcap_tail(left, 0)
        return 1, _pcap_tail(left, struct.unpack_from(self.byteorder + "8xI", buf, pos)[0])

    def records(self):
        self._begin()
        if self.linktype in COOKED_LINKTYPES:
            return self._cooked_records(self._records())
        return self._records()

    def _cooked_records(self, records):
        """records(), counting the Linux cooked headers (only such files pay for it)."""
        for rec in records:
            if rec[1] != NONPACKET:
                self._cook(0, rec[1], rec[2], 0, None)
            yield rec

    def _records(self):
        read = self._stream.read
        unpack = struct.Struct(self.byteorder + "IIII").unpack_from
        lt = self.linktype
        div = 1000000000 if self.nanosecond else 1000000
        maxcap = self._maxcap()
        buf = self._buf
        base = self._base
        pos = 0
        n = len(buf)
        need = CHUNK
        self._buf = b""
        ts = None
        eof = False
        while True:
            while pos + 16 <= n:
                sec, frac, caplen, wirelen = unpack(buf, pos)
                end = pos + 16 + caplen
                if end > n or caplen > maxcap or frac >= div:
                    what, val = self._check(buf, pos, n, base, eof, ts, maxcap, div)
                    if what == "need":
                        need = val
                        break
                    if what == "end":
                        if val is None:
                            pos = n
                            break
                        pos = val
                        continue
                    if what == "bad":  # not a record: skip to the next valid chain of records
                        skipped, buf, eof = self._recover(buf[pos:], base + pos, val, ts)
                        base += pos + skipped
                        pos = 0
                        n = len(buf)
                        if eof:
                            break
                        continue
                if caplen == 0 and sec == 0 and frac == 0:
                    self._empty(base + pos, ts, buf, end, n)
                    yield (ts or 0.0), NONPACKET, b"", 0, base + pos, -1
                    pos = end
                    continue
                ts = (sec * div + frac) / div
                yield ts, lt, buf[pos + 16:end], wirelen, base + pos, 0
                pos = end
            else:
                need = 16 - (n - pos)
            if eof:
                if pos < n:
                    self._end(buf, pos, n, base, ts)
                self._eof(base + n)
                return
            chunk = read(need if need > CHUNK else CHUNK)
            if not chunk:
                eof = True
                continue
            buf = buf[pos:] + chunk if pos < n else chunk
            base += pos
            pos = 0
            n = len(buf)
            need = CHUNK
            if self._pending is not None:
                self._settle(buf, 0, n)

    def walk(self, tag, on_esp, on_frame, on_checkpoint=None, every=1024, on_batch=None,
             on_tcp=None):
        """Copy-free :meth:`_Reader.walk`: ESP of the common shape is recognised where it lies
        in the read buffer, so no bytes object or tuple is made for it.

        With ``on_batch`` (Ethernet and Linux cooked captures): a chunk of records at a time, ESP
        of the common shapes recognised with array operations (:mod:`dissect.vpn.batch`) and
        handed over as :class:`~dissect.vpn.batch.EspBatch` objects — ``on_batch(tag, batch)`` —
        instead of one ``on_esp`` call per packet.  Every other record goes to ``on_frame`` as
        without it, in file order; ESP pending from the same chunk is delivered first unless the
        record is inert for ESP (:func:`dissect.vpn.batch.classify`), so each SA sees its packets
        in order.  With ``on_tcp = (ports, fn)`` too, runs of records that are IPv4 TCP of the
        common shape (:func:`dissect.vpn.batch.plain_tcp`) on none of ``ports`` and whose
        payload cannot start a VPN stream go to ``fn(tag, linktype, ifaces, buf, run)``
        instead, their TCP headers decoded: ``run`` maps ``number``, ``ts``, ``src``, ``dst``,
        ``seq``, ``ack``, ``flags``, ``frame``, ``poff`` (the last two offsets: the frame in
        ``buf``, the payload in the frame; the TCP header is at frame + the int ``l4``) each to
        a list, and ``arrays`` to numpy arrays of ``src``, ``dst`` (``uint32``), ``sport``,
        ``dport``, ``poff``, ``end`` (the IP payload's end in the frame) and for Linux cooked
        frames ``ifindex``, ``hatype``, ``pkttype`` (``buf`` is only valid during the call).  ``fn``
        returns True when it took the run as plaintext (no ESP event can come of it: ESP
        pending from the chunk may wait), False to have its records go to ``on_frame``.
        """
        if on_batch is not None and self.linktype in _BATCH_LINKTYPES:
            self._walk_batch(tag, on_batch, on_frame, on_checkpoint, every, on_tcp)
            return
        self._begin()
        mask = every - 1 if on_checkpoint is not None else -1
        read = self._stream.read
        unpack = struct.Struct(self.byteorder + "IIII").unpack_from
        esp_at = _fast.esp_at
        esp_cooked = _fast.esp_cooked_at
        lt = self.linktype
        eth = lt == 1
        div = 1000000000 if self.nanosecond else 1000000
        maxcap = self._maxcap()
        buf = self._buf
        base = self._base
        pos = 0
        n = len(buf)
        need = CHUNK
        self._buf = b""
        number = 0
        empties = 0
        nbytes = 0
        trunc = 0
        tmax = float("-inf")
        tmin = float("inf")
        disorder = 0
        first = None
        ts = None
        eof = False
        cooked = lt in COOKED_LINKTYPES
        try:
            while True:
                while pos + 16 <= n:
                    sec, frac, caplen, wirelen = unpack(buf, pos)
                    end = pos + 16 + caplen
                    if end > n or caplen > maxcap or frac >= div:
                        what, val = self._check(buf, pos, n, base, eof, ts, maxcap, div)
                        if what == "need":
                            need = val
                            break
                        if what == "end":
                            if val is None:
                                pos = n
                                break
                            pos = val
                            continue
                        if what == "bad":
                            skipped, buf, eof = self._recover(buf[pos:], base + pos, val, ts)
                            base += pos + skipped
                            pos = 0
                            n = len(buf)
                            if eof:
                                break
                            continue
                    number += 1
                    if not number & mask:
                        on_checkpoint(number, base + pos)
                    if caplen == 0 and sec == 0 and frac == 0:
                        self._empty(base + pos, ts, buf, end, n)
                        empties += 1
                        pos = end
                        continue
                    nbytes += caplen
                    ts = (sec * div + frac) / div
                    if first is None:
                        first = ts
                    if ts >= tmax:
                        tmax = ts
                    else:
                        disorder += 1
                        if ts < tmin:
                            tmin = ts
                    if wirelen > caplen:
                        trunc += 1
                    if eth:
                        r = esp_at(buf, pos + 16, end)
                        if r is not None:
                            on_esp((tag, number), ts, 4, r[0], r[1], r[2], r[3], r[4], r[5], r[6])
                            pos = end
                            continue
                    elif cooked:
                        self._cook(0, lt, buf, pos + 16, end)
                        r = esp_cooked(buf, pos + 16, end, lt)
                        if r is not None:
                            on_esp((tag, number), ts, 4, r[0], r[1], r[2], r[3], r[4], r[5], r[6])
                            pos = end
                            continue
                    on_frame(tag, number, ts, lt, buf[pos + 16:end], wirelen, base + pos, 0)
                    pos = end
                else:
                    need = 16 - (n - pos)
                if eof:
                    if pos < n:
                        self._end(buf, pos, n, base, ts)
                    self._eof(base + n)
                    return
                chunk = read(need if need > CHUNK else CHUNK)
                if not chunk:
                    eof = True
                    continue
                buf = buf[pos:] + chunk if pos < n else chunk
                base += pos
                pos = 0
                n = len(buf)
                need = CHUNK
                if self._pending is not None:
                    self._settle(buf, 0, n)
        finally:
            frames = number - empties
            self.walk_stats = _walk_stats(number, nbytes, trunc, first, tmin, tmax, disorder,
                                          {lt: frames} if frames else {})

    def _walk_batch(self, tag, on_batch, on_frame, on_checkpoint, every, on_tcp=None):
        self._begin()
        bt = _Batcher(self, tag, on_batch, on_frame, on_checkpoint, every)
        lt = self.linktype
        bt.on_tcp = on_tcp
        bt.tcp_lt = lt
        cooked = lt in COOKED_LINKTYPES
        np = bt.np
        classify = bt.vec.classify
        caplen_at = struct.Struct(self.byteorder + "8xI").unpack_from
        order = self.byteorder
        nanosecond = self.nanosecond
        div = 1000000000 if nanosecond else 1000000
        maxcap = self._maxcap()
        limit = BATCH_RECORDS
        window = 16 * limit  # the smallest record is a header
        try:
            while True:
                bt.fill()
                buf = bt.buf
                n = bt.n
                pos = bt.pos
                eof = bt.eof
                if self._pending is not None:
                    self._settle(buf, pos, n)
                corrupt = None
                need = None
                while True:
                    offs = []
                    app = offs.append
                    full = False
                    # the record walk: nothing but lengths (the slack after n makes the read
                    # safe), a window at a time (a window holds at most `limit` records)
                    while True:
                        wn = pos + window
                        if wn > n:
                            wn = n
                        p0 = pos
                        while True:
                            end = pos + 16 + caplen_at(buf, pos)[0]
                            if end > wn:
                                break
                            app(pos)
                            pos = end
                        if len(offs) >= limit:
                            full = True
                            break
                        if end > n:
                            break
                        if pos == p0:  # a record longer than the window
                            app(pos)
                            pos = end
                    if not offs:
                        break
                    got = {}
                    res = classify(buf, offs, order, nanosecond, bt.number, fields=got,
                                   linktype=lt)
                    cap = res[1]
                    frac = got["frac"]
                    k = len(offs)
                    bad = cap > maxcap
                    sus = (frac >= div) & ~bad
                    if sus.any():
                        # an implausible header is a record only when a header follows it
                        nxt = np.empty(k, dtype=np.int64)
                        nxt[:-1] = cap[1:]
                        lead = self._leads(buf, pos, n, eof, maxcap)  # after the last one
                        nxt[-1] = -1 if lead is None else (0 if lead else maxcap + 1)
                        bad |= sus & (nxt > maxcap)
                        und = sus & (nxt < 0)
                    else:
                        und = None
                    if bad.any() or (und is not None and und.any()):
                        j = int((bad | und).argmax()) if und is not None else int(bad.argmax())
                        if bad[j]:
                            c = int(cap[j])
                            corrupt = (offs[j], self._corrupt(c) if c > maxcap else
                                       self._implausible(int(frac[j]), c))
                        else:
                            need = 32 + int(cap[j])  # read on: the header after it tells
                        pos = offs[j]
                        k = j
                    bt.words = got.get("words")
                    if cooked and k:
                        self._cook_batch(buf, offs[:k] if k < len(offs) else offs, cap[:k], np)
                    empty = np.flatnonzero((cap[:k] == 0) & (res[0][:k] == 0))
                    if len(empty):
                        self._with_empty(bt, offs, k, res, empty, buf, n)
                    elif k:
                        bt.push(offs if k == len(offs) else offs[:k], 16,
                                res if k == len(offs) else _part(res, 0, k, np), lt)
                    if corrupt is not None or need is not None or not full:
                        break
                if corrupt is None and need is None and pos + 16 <= n:
                    c = caplen_at(buf, pos)[0]
                    if c > maxcap:
                        corrupt = (pos, self._corrupt(c))
                bt.pos = pos
                if corrupt is not None:
                    off, reason = corrupt
                    skipped, rest, eof = self._recover(bytes(bt.mv[off:n]), bt.base + off,
                                                       reason, bt.last)
                    if eof:
                        self._eof(bt.base + off + skipped)
                        return
                    bt.reset(rest, bt.base + off + skipped)
                    continue
                if eof:
                    if pos < n:
                        found = self._end(buf, pos, n, bt.base, bt.last)
                        if found is not None:
                            bt.pos = found
                            continue
                    self._eof(bt.base + n)
                    return
                bt.slide(need or (16 + caplen_at(buf, pos)[0] if n - pos >= 16 else 16))
        finally:
            self.walk_stats = bt.stats()

    def _cook_batch(self, buf, offs, cap, np):
        """:meth:`_Reader._cook` for the records at ``offs`` (``cap``: their captured lengths),
        counted in the order their keys are first seen, as one record at a time would."""
        if self.linktype == 276:
            a = np.frombuffer(buf, dtype=np.uint8)
            o = np.asarray(offs, dtype=np.int64)
            sel = o[cap >= 20] + 16
            ifx = (a[sel + 4].astype(np.int64) << 24 | a[sel + 5].astype(np.int64) << 16
                   | a[sel + 6].astype(np.int64) << 8 | a[sel + 7])
            key = ifx << 8 | a[sel + 10]
        else:
            a = np.frombuffer(buf, dtype=np.uint8)
            o = np.asarray(offs, dtype=np.int64)
            sel = o[cap >= 16] + 16
            key = a[sel].astype(np.int64) << 8 | a[sel + 1]
        if not len(key):
            return
        vals, first, counts = np.unique(key, return_index=True, return_counts=True)
        ck = self.cooked
        for i in np.argsort(first, kind="stable").tolist():
            v = int(vals[i])
            k = (0, v >> 8, v & 0xFF) if self.linktype == 276 else (0, None, v)
            ck[k] = ck.get(k, 0) + int(counts[i])

    def _with_empty(self, bt, offs, k, res, empty, buf, n):
        """Hand over the first ``k`` records at ``offs``, some of them empty (positions
        ``empty``): the others in runs, the empty ones noted as damage (numbered)."""
        np = bt.np
        i = 0
        starts = np.flatnonzero(np.diff(empty) != 1) + 1  # where a new run of empties begins
        for run in np.split(empty, starts):
            a, b = int(run[0]), int(run[-1]) + 1
            if a > i:
                bt.push(offs[i:a], 16, _part(res, i, a, np), self.linktype, row0=i)
            end = offs[b - 1] + 16
            self._empty(bt.base + offs[a], bt.last, buf, end, n, b - a)
            bt.skip(b - a, bt.base + offs[a], 16)
            i = b
        if i < k:
            bt.push(offs[i:k], 16, _part(res, i, k, np), self.linktype, row0=i)


class _Corrupt(Exception):
    pass


class _Order:
    """Precompiled structs for one byte order."""

    __slots__ = ("char", "hdr", "head7", "head8", "u32", "epb", "pb", "opt", "idb", "u64", "i64",
                 "u16", "isb", "shb")

    def __init__(self, char):
        self.char = char
        self.hdr = struct.Struct(char + "II").unpack_from
        self.head7 = struct.Struct(char + "7I").unpack_from
        self.head8 = struct.Struct(char + "8I").unpack_from
        self.u32 = struct.Struct(char + "I").unpack_from
        self.epb = struct.Struct(char + "IIIII").unpack_from
        self.pb = struct.Struct(char + "HHIIII").unpack_from
        self.opt = struct.Struct(char + "HH").unpack_from
        self.idb = struct.Struct(char + "HHI").unpack_from
        self.u64 = struct.Struct(char + "Q").unpack_from
        self.i64 = struct.Struct(char + "q").unpack_from
        self.u16 = struct.Struct(char + "H").unpack_from
        self.isb = struct.Struct(char + "III").unpack_from
        self.shb = struct.Struct(char + "IIHH").unpack_from


_LE = _Order("<")
_BE = _Order(">")
_COOKED_ARR = sorted(COOKED_LINKTYPES)
#: link types of classic pcap files read a chunk at a time (dissect.vpn.batch.LINKTYPES)
_BATCH_LINKTYPES = frozenset((1, 113, 276))
# the block types a reader knows (those that may also start a chain: dissect.vpn.chain); a block
# of another type is skipped only when a block follows it, at most this long
KNOWN_BLOCKS = frozenset((_SHB, _B_IDB, _B_PB, _B_SPB, _B_NRB, _B_ISB, _B_EPB, _B_DSB)) | \
    _NUMBERED
_FOLLOW_MAX = 1 << 20


def ok_need(buf, end, n, o):
    """Bytes needed after ``end`` to see the block that starts there whole (at least its
    header)."""
    if end + 12 > n:
        return 12
    blen = o.u32(buf, end + 4)[0]
    return max(12, min(blen, _FOLLOW_MAX))


def _tsresol_ok(tsresol: int) -> bool:
    return (tsresol & 0x7F) <= (63 if tsresol & 0x80 else 18)


class PcapngReader(_Reader):
    """pcapng: every section (each SHB resets byte order and interfaces), EPB, SPB, PB, ISB.

    Damage (see the module docstring): a block whose length or trailer is impossible starts an
    unreadable range, skipped to the next valid chain of blocks; a block whose framing is right
    but whose content is not (an undeclared interface, a captured length past its block, an SPB
    before any IDB, malformed options) is skipped alone; a packet block whose timestamp lies
    outside [0, TS_LIMIT) (a 64-bit tick count, an extreme ``if_tsresol`` or ``if_tsoffset``) is
    a damaged record that keeps its frame number."""

    __slots__ = ("sections", "_order", "_secifs", "_last_ts", "notes", "_ifn")

    def __init__(self, stream, head: bytes):
        self._stream = stream
        self._started = False
        self.format = "pcapng"
        self.interfaces = []
        self.isb = {}
        self.drops = {}
        #: pcapng ``isb_endtime``: when the capture stopped (the latest given), else None
        self.ended = None
        self._init_damage()
        #: problems that lost no record (malformed options of an interface description block)
        self.notes = []
        self._ifn = []  # packet records per global interface index
        self.sections = []
        self._secifs = []
        self._last_ts = 0.0
        rest = _read_exact(stream, 8)
        if len(rest) < 8:
            raise DissectError("truncated pcapng section header block", 0)
        order = self._bom(rest[4:8])
        if order is None:
            raise DissectError(f"pcapng section header with a bad byte-order magic "
                               f"{rest[4:8].hex()}", 8)
        blen = order.u32(rest, 0)[0]
        if blen < 28 or blen & 3 or blen > MAX_RECORD:
            raise DissectError(f"pcapng section header block with a bad length {blen}", 4)
        body = _read_exact(stream, blen - 12)
        if len(body) < blen - 12:
            raise DissectError("truncated pcapng section header block", 0)
        block = head + rest + body
        try:
            self._section(block, 0, blen, order, 0)
        except _Corrupt as exc:
            raise DissectError(str(exc), 0) from None
        self.byteorder = order.char
        self.version = self.sections[0]["version"]
        self._buf = b""
        self._base = blen

    @property
    def warnings(self) -> list:
        return sorted(_Reader.warnings.fget(self) + self.notes, key=lambda w: w[0])

    @property
    def iface_frames(self) -> dict:
        """Packet records read so far per global interface index (interfaces without any
        left out)."""
        return {i: c for i, c in enumerate(self._ifn) if c}

    def _counted(self, rec):
        """A packet record of the general rules: counted for its interface (and its Linux
        cooked header)."""
        gi = rec[5]
        self._ifn[gi] += 1
        if rec[1] in COOKED_LINKTYPES:
            self._cook(gi, rec[1], rec[2], 0, None)
        return rec

    def chain_rules(self):
        from dissect.vpn.chain import PcapngRules

        return PcapngRules(self._order.char, [(u, off) for _gi, _lt, u, off, _s in self._secifs])

    @staticmethod
    def _bom(b4):
        if b4 == b"\x4d\x3c\x2b\x1a":
            return _LE
        if b4 == b"\x1a\x2b\x3c\x4d":
            return _BE
        return None

    # -- block handlers (not the hot path) -------------------------------------------------

    def _options(self, buf, start, end, o):
        """Yield (code, value bytes) of an options area; raise _Corrupt if malformed."""
        opt = o.opt
        p = start
        while p + 4 <= end:
            code, olen = opt(buf, p)
            if code == 0:
                return
            q = p + 4 + olen
            if q > end:
                raise _Corrupt(f"option {code} length {olen} runs past the end of its block")
            yield code, buf[p + 4:q]
            p = q + (-olen & 3)

    def _section(self, buf, pos, blen, o, base):
        _blen, _bom, major, minor = o.shb(buf, pos + 4)
        if major != 1:
            raise _Corrupt(f"unsupported pcapng version {major}.{minor}")
        info = {"byteorder": o.char, "version": (major, minor), "offset": base + pos,
                "hardware": None, "os": None, "userappl": None}
        names = {2: "hardware", 3: "os", 4: "userappl"}
        for code, val in self._options(buf, pos + 24, pos + blen - 4, o):
            if code in names:
                info[names[code]] = val.decode("utf-8", "replace").rstrip("\x00")
        self.sections.append(info)
        self._order = o
        self._secifs = []

    def _interface(self, buf, pos, blen, o, base):
        if blen < 20:
            raise _Corrupt(f"interface description block too short ({blen} bytes)")
        linktype, _res, snaplen = o.idb(buf, pos + 8)
        tsresol = 6
        tsoffset = 0
        name = descr = None
        fcslen = None
        try:
            for code, val in self._options(buf, pos + 16, pos + blen - 4, o):
                if code == 9 and len(val) >= 1:
                    tsresol = val[0]
                elif code == 14 and len(val) >= 8:
                    tsoffset = o.i64(val, 0)[0]
                elif code == 2:
                    name = val.decode("utf-8", "replace").rstrip("\x00")
                elif code == 3:
                    descr = val.decode("utf-8", "replace").rstrip("\x00")
                elif code == 13 and len(val) >= 1:
                    fcslen = val[0]
        except _Corrupt as exc:
            # the interface is still declared (the ids of later ones must not shift)
            if len(self.notes) < DAMAGE_KEEP:
                self.notes.append((base + pos, f"interface description block: {exc}; the "
                                               f"options after it are ignored"))
        iface = Interface(linktype, snaplen, tsresol, tsoffset, name, fcslen,
                          len(self.sections) - 1, descr)
        gi = len(self.interfaces)
        self.interfaces.append(iface)
        self._ifn.append(0)
        units = iface.units
        offt = tsoffset * units
        if not _tsresol_ok(tsresol):
            units, offt = 1, _UNUSABLE  # every timestamp of it is out of range: damaged records
        self._secifs.append((gi, linktype, units, offt, snaplen))

    def _stats(self, buf, pos, blen, o):
        if blen < 24:
            raise _Corrupt(f"interface statistics block too short ({blen} bytes)")
        iid = o.u32(buf, pos + 8)[0]
        counters = {}
        for code, val in self._options(buf, pos + 20, pos + blen - 4, o):
            name = _ISB_COUNTERS.get(code)
            if name is not None and len(val) >= 8:
                counters[name] = o.u64(val, 0)[0]
            elif code == 3 and len(val) >= 8 and iid < len(self._secifs):
                # isb_endtime: high and low 32 bits in the interface's units (RFC draft
                # pcapng §4.6)
                _gi, _lt, units, offt, _snap = self._secifs[iid]
                hi, lo = o.u32(val, 0)[0], o.u32(val, 4)[0]
                end = (((hi << 32) | lo) + offt) / units
                if self.ended is None or end > self.ended:
                    self.ended = end
        if iid < len(self._secifs) and counters:
            self.isb.setdefault(self._secifs[iid][0], {}).update(counters)

    def _epb_options(self, buf, start, end, gi, o):
        # read them all before counting: malformed options count nothing (raise _Corrupt)
        dropped = [o.u64(val, 0)[0] for code, val in self._options(buf, start, end, o)
                   if code == 4 and len(val) >= 8]  # epb_dropcount
        if dropped:
            self.drops[gi] = self.drops.get(gi, 0) + sum(dropped)

    _HEADER = 12

    def _runs_past(self, buf, pos):
        btype, blen = self._order.hdr(buf, pos)
        return f"corrupt block length {blen} (block type {btype:#x}) runs past the end of the data"

    def _cut_off(self, buf, pos, n):
        """``(records lost, reason)`` for the data ending inside the block at ``pos``."""
        left = n - pos
        if left < 12:
            return 0, _pcapng_tail(left, 0)
        btype, blen = self._order.hdr(buf, pos)
        return (1 if btype in (_B_EPB, _B_PB, _B_SPB) else 0), _pcapng_tail(left, blen)

    def _followed(self, buf, end, n, eof):
        """A block (framing only: length, trailer) or the end of the data at ``end``: True /
        False / None (not read yet)."""
        if end + 12 > n:
            return end == n if eof else None
        o = self._order
        btype, blen = o.hdr(buf, end)
        if btype == _SHB:
            o = self._bom(bytes(buf[end + 8:end + 12]))
            if o is None:
                return False
            blen = o.u32(buf, end + 4)[0]
        if blen & 3 or blen < 12 or blen > _FOLLOW_MAX:
            return False
        if end + blen > n:
            return False if eof else None
        return o.u32(buf, end + blen - 4)[0] == blen

    def _ts_reason(self, gi, ts) -> str:
        tsresol = self.interfaces[gi].tsresol
        if not _tsresol_ok(tsresol):
            return (f"timestamp unusable: interface {gi} has an out-of-range time resolution "
                    f"(if_tsresol {tsresol:#x})")
        if ts < 0:
            return "timestamp before 1970 (tick count or if_tsoffset out of range)"
        return "timestamp after 2106 (tick count, if_tsresol or if_tsoffset out of range)"

    def _peek(self, buf, p, n):
        """The timestamp of the block at ``p`` when it is an enhanced / obsolete packet block of
        a declared interface with a usable timestamp (else None; _UNKNOWN: not read yet)."""
        o = self._order
        if p + 8 > n:
            return _UNKNOWN
        btype, blen = o.hdr(buf, p)
        if btype not in (_B_EPB, _B_PB) or blen < 32:
            return None
        if p + 28 > n:
            return _UNKNOWN
        if btype == _B_EPB:
            iid, hi, lo, _c, _w = o.epb(buf, p + 8)
        else:
            iid, _d, hi, lo, _c, _w = o.pb(buf, p + 8)
        if iid >= len(self._secifs):
            return None
        _gi, _lt, units, offt, _snap = self._secifs[iid]
        ts = (((hi << 32) | lo) + offt) / units
        return ts if 0.0 <= ts < TS_LIMIT else None

    def _bad_ts(self, buf, pos, blen, base, n, gi, ts):
        """A packet block whose timestamp is out of range: a damaged record that keeps its frame
        number (Wireshark shows it)."""
        self._note(base + pos, blen, 1, True, self._ts_reason(gi, ts), self._ts_or_none(),
                   self._peek(buf, pos + blen, n), "records")
        return (self._last_ts, NONPACKET, b"", 0, base + pos, -1)

    def _ts_or_none(self):
        return self._last_ts if self._last_ts else None

    def _epb(self, buf, pos, blen, base, n):
        o = self._order
        if blen < 32:
            raise _Corrupt(f"enhanced packet block too short ({blen} bytes)")
        iid, hi, lo, caplen, wirelen = o.epb(buf, pos + 8)
        if caplen > blen - 32:
            raise _Corrupt(f"enhanced packet block captured length {caplen} exceeds its block "
                           f"length {blen}")
        if iid >= len(self._secifs):
            raise _Corrupt(f"enhanced packet block for undeclared interface {iid}")
        gi, lt, units, offt, _snap = self._secifs[iid]
        ts = (((hi << 32) | lo) + offt) / units
        if not 0.0 <= ts < TS_LIMIT:
            return self._bad_ts(buf, pos, blen, base, n, gi, ts)
        if blen != 32 + ((caplen + 3) & -4):
            self._epb_options(buf, pos + 28 + ((caplen + 3) & -4), pos + blen - 4, gi, o)
        return self._counted((ts, lt, buf[pos + 28:pos + 28 + caplen], wirelen, base + pos, gi))

    def _other(self, btype, buf, pos, blen, base, n):
        """Handle a block other than an EPB; return a record tuple or None."""
        o = self._order
        if btype == _B_IDB:
            self._interface(buf, pos, blen, o, base)
        elif btype == _B_SPB:
            if blen < 16:
                raise _Corrupt(f"simple packet block too short ({blen} bytes)")
            if not self._secifs:
                raise _Corrupt("simple packet block before any interface description block")
            gi, lt, _u, _off, snap = self._secifs[0]
            wirelen = o.u32(buf, pos + 8)[0]
            caplen = wirelen if not snap or wirelen <= snap else snap
            if caplen > blen - 16:
                caplen = blen - 16
            return self._counted((self._last_ts, lt, buf[pos + 12:pos + 12 + caplen], wirelen,
                                  base + pos, gi))
        elif btype == _B_PB:
            if blen < 32:
                raise _Corrupt(f"packet block too short ({blen} bytes)")
            iid, dropped, hi, lo, caplen, wirelen = o.pb(buf, pos + 8)
            if caplen > blen - 32:
                raise _Corrupt(f"packet block captured length {caplen} exceeds its block "
                               f"length {blen}")
            try:
                gi, lt, units, offt, _snap = self._secifs[iid]
            except IndexError:
                raise _Corrupt(f"packet block for undeclared interface {iid}") from None
            ts = (((hi << 32) | lo) + offt) / units
            if not 0.0 <= ts < TS_LIMIT:
                return self._bad_ts(buf, pos, blen, base, n, gi, ts)
            if dropped != 0xFFFF and dropped:
                self.drops[gi] = self.drops.get(gi, 0) + dropped
            return self._counted((ts, lt, buf[pos + 28:pos + 28 + caplen], wirelen, base + pos,
                                  gi))
        elif btype == _B_ISB:
            self._stats(buf, pos, blen, o)
        elif btype in _NUMBERED:
            body = buf[pos + 8:pos + blen - 4]
            return (self._last_ts, NONPACKET, body, len(body), base + pos, -1)
        # NRB, DSB, unknown and local blocks: skipped
        return None

    def walk(self, tag, on_esp, on_frame, on_checkpoint=None, every=1024, on_batch=None,
             on_tcp=None):
        """:meth:`_Reader.walk`; with ``on_batch``, runs of enhanced packet blocks are read and
        classified a chunk at a time as :class:`PcapReader` does (every other block one at a
        time by the rules of :meth:`records`)."""
        if on_batch is None:
            _Reader.walk(self, tag, on_esp, on_frame, on_checkpoint, every)
            return
        self._walk_batch(tag, on_batch, on_frame, on_checkpoint, every)

    def _walk_batch(self, tag, on_batch, on_frame, on_checkpoint, every):
        self._begin()
        bt = _Batcher(self, tag, on_batch, on_frame, on_checkpoint, every)
        limit = BATCH_RECORDS
        window = 32 * limit  # the smallest enhanced packet block
        try:
            while True:
                bt.fill()
                buf = bt.buf
                n = bt.n
                pos = bt.pos
                if self._pending is not None:
                    self._settle(buf, pos, n)
                try:
                    while True:
                        hdr = self._order.hdr
                        offs = []
                        app = offs.append
                        full = False
                        # a run of enhanced packet blocks: nothing but lengths (slack after n:
                        # safe), a window at a time (a window holds at most `limit` blocks)
                        while True:
                            wn = pos + window
                            if wn > n:
                                wn = n
                            p0 = pos
                            while True:
                                btype, blen = hdr(buf, pos)
                                if btype != 6 or blen < 32:
                                    end = -1
                                    break
                                end = pos + blen
                                if end > wn:
                                    break
                                app(pos)
                                pos = end
                            if len(offs) >= limit:
                                full = True
                                break
                            if end < 0 or end > n:
                                break
                            if pos == p0:  # a block longer than the window
                                app(pos)
                                pos = end
                        if offs:
                            k = self._epb_run(bt, offs)
                            if k < len(offs):
                                pos = offs[k]  # a block whose framing the general rules reject
                            elif full:
                                continue
                        bt.pos = pos
                        if pos + 12 > n:
                            need = 12
                            break
                        end, rec = self._block(buf, pos, n, bt.base, bt.last_or(self._last_ts),
                                               bt.eof)
                        if end is None:
                            need = rec
                            break
                        bt.pos = pos = end
                        if rec is not None:
                            bt.one(rec)
                except _Corrupt as exc:
                    reason = str(exc)
                except (struct.error, IndexError, ValueError, OverflowError) as exc:
                    reason = f"malformed block ({exc})"
                else:
                    if bt.eof:
                        if pos < n:
                            found = self._end(buf, pos, n, bt.base, bt.last)
                            if found is not None:
                                bt.pos = found
                                continue
                        self._eof(bt.base + n)
                        return
                    bt.slide(need)
                    continue
                # framing is broken at bt.pos: skip to the next valid chain of blocks
                off = bt.pos
                skipped, rest, eof = self._recover(bytes(bt.mv[off:n]), bt.base + off, reason,
                                                   bt.last)
                if eof:
                    self._eof(bt.base + off + skipped)
                    return
                bt.reset(rest, bt.base + off + skipped)
        finally:
            self._last_ts = bt.last_or(self._last_ts)
            self.walk_stats = bt.stats()

    def _epb_run(self, bt, offs):
        """Classify and hand over the enhanced packet blocks at ``offs`` (whole, in the buffer),
        in runs; a block whose content is unusable (captured length past its block, undeclared
        interface, timestamp out of range) goes through the general rules (:meth:`_block`) in
        its place.  Stops before the first block whose framing is wrong (length not a multiple
        of 4, trailer different from the length).  Returns the number of blocks done."""
        np = bt.np
        vec = bt.vec
        o = self._order
        u4 = o.char + "u4"
        buf = bt.buf
        arr = np.frombuffer(buf, dtype=np.uint8)
        p = np.array(offs, dtype=np.int64)
        head = vec.windows(arr, 28)[p]
        blen = vec.field(head, 4, u4).astype(np.int64)
        iid = vec.field(head, 8, u4).astype(np.int64)
        cap = vec.field(head, 20, u4).astype(np.int64)
        trailer = vec.windows(arr, 4)[p + blen - 4].view(u4).ravel()
        frame = ((blen & 3) != 0) | (trailer != blen)
        stop = int(frame.argmax()) if frame.any() else len(offs)
        secifs = self._secifs
        bad = (cap > blen - 32) | (iid >= len(secifs))
        ticks = (vec.field(head, 12, u4).astype(np.uint64) << np.uint64(32)) | \
            vec.field(head, 16, u4).astype(np.uint64)
        lt = np.zeros(len(offs), dtype=np.int64)
        ts = np.full(len(offs), np.nan)
        anybad = bool(bad.any())
        ids = np.unique(iid[~bad] if anybad else iid).tolist()
        for i in ids:
            gi, ltype, units, offt, _snap = secifs[i]
            # the usual run: one interface, nothing bad - no masks
            sel = slice(None) if len(ids) == 1 and not anybad else (iid == i) & ~bad
            lt[sel] = ltype
            t = ticks[sel]
            if int(t.max()) + max(offt, 0) < 1 << 53 and offt >= 0 and units < 1 << 53:
                # exact: both below 2**53, where int / int is one float division
                ts[sel] = (t.astype(np.float64) + float(offt)) / float(units)
            else:
                ts[sel] = [(x + offt) / units for x in t.tolist()]
        bad |= ~((ts >= 0.0) & (ts < TS_LIMIT))  # NaN (bad already) compares False
        bad[stop:] = False
        # options (epb_dropcount) after the padded data; malformed ones make the block bad
        for j in np.flatnonzero((blen - cap > 35) & ~bad).tolist():
            if j >= stop:
                break
            start = offs[j] + 28 + ((int(cap[j]) + 3) & -4)
            try:
                self._epb_options(buf, start, offs[j] + int(blen[j]) - 4,
                                  secifs[int(iid[j])][0], o)
            except _Corrupt:
                bad[j] = True
        badi = np.flatnonzero(bad[:stop]).tolist()
        i = 0
        for j in badi + [stop]:
            if j == len(offs) and not i:
                self._epb_push(bt, offs, p, lt, ts, iid)  # the usual run: whole
            elif j > i:
                self._epb_push(bt, offs[i:j], p[i:j], lt[i:j], ts[i:j], iid[i:j])
            if j < stop:
                # the general rules note the damage (and give a numbered record when Wireshark
                # would show one)
                end, rec = self._block(buf, offs[j], bt.n, bt.base, bt.last_or(self._last_ts))
                if rec is not None:
                    bt.one(rec)
            i = j + 1
        return stop

    def _epb_push(self, bt, offs, p, lt, ts, iid):
        """Hand over good enhanced packet blocks (classified a run at a time), counted per
        interface."""
        np = bt.np
        secifs = self._secifs
        for i, c in enumerate(np.bincount(iid).tolist()):  # ids are declared: small
            if c:
                self._ifn[secifs[i][0]] += c
        cooked = np.flatnonzero(np.isin(lt, _COOKED_ARR)) if lt.max() >= 113 else ()
        for j in cooked:
            gi = secifs[int(iid[j])][0]
            start = offs[j] + 28
            cap = struct.unpack_from(self._order.char + "I", bt.buf, offs[j] + 20)[0]
            self._cook(gi, int(lt[j]), bt.buf, start, start + cap)
        eth = lt == 1
        res = bt.vec.classify(bt.buf, p + 12, self._order.char, False, bt.number, ts=ts,
                              eth=None if eth.all() else eth)
        first = int(lt[0])
        gif = [g[0] for g in secifs]
        ids = int(iid[0])
        bt.push(offs, 28, res, first if (lt == first).all() else lt,
                gif[ids] if (iid == ids).all() else np.take(gif, iid))

    def _block(self, buf, pos, n, base, last_ts, eof=False):
        """The block at ``buf[pos:]`` by the general rules: ``(end, record or None)``; or
        ``(None, bytes needed from pos)`` when it is not wholly in ``buf[:n]``.  A section
        header switches byte order and interfaces.  Raises :class:`_Corrupt` when the block's
        framing is wrong (bad length, trailer or byte-order magic: no block boundary is known
        after it); a block framed right whose content is unusable is noted as damage and
        skipped (``rec`` None, or a numbered damaged record).  A block of a type this reader
        does not know is skipped, as Wireshark does, but only when a block follows it
        (:meth:`_followed`): damage can look like one (``eof``: the data ends at ``n``)."""
        o = self._order
        btype, blen = o.hdr(buf, pos)
        if btype == _SHB:
            o = self._bom(buf[pos + 8:pos + 12])
            if o is None:
                raise _Corrupt(f"section header block with a bad byte-order magic "
                               f"{bytes(buf[pos + 8:pos + 12]).hex()}")
            blen = o.u32(buf, pos + 4)[0]
        if blen & 3 or blen < 12 or blen > MAX_RECORD:
            raise _Corrupt(f"corrupt block length {blen} (block type {btype:#x})")
        end = pos + blen
        if end > n:
            return None, blen
        trailer = o.u32(buf, end - 4)[0]
        if trailer != blen:
            raise _Corrupt(f"block trailer length {trailer} differs from "
                           f"block length {blen} (block type {btype:#x})")
        if btype not in KNOWN_BLOCKS:
            ok = self._followed(buf, end, n, eof)
            if ok is None:
                return None, blen + ok_need(buf, end, n, o)
            if not ok:
                raise _Corrupt(f"block of unknown type {btype:#x} ({blen} bytes) not followed "
                               f"by a block")
        self._last_ts = last_ts
        try:
            if btype == _SHB:
                if blen < 28:
                    raise _Corrupt(f"section header block too short ({blen} bytes)")
                self._section(buf, pos, blen, o, base)
                return end, None
            if btype == _B_EPB:
                return end, self._epb(buf, pos, blen, base, n)
            return end, self._other(btype, buf, pos, blen, base, n)
        except (_Corrupt, struct.error, IndexError, ValueError, OverflowError) as exc:
            reason = str(exc) if isinstance(exc, _Corrupt) else \
                f"malformed block type {btype:#x} ({exc})"
            packet = btype in (_B_EPB, _B_PB, _B_SPB)
            self._note(base + pos, blen, 1 if packet else 0, False, reason, self._ts_or_none(),
                       self._peek(buf, end, n), "records")
            return end, None

    # -- the walk ---------------------------------------------------------------------------

    def records(self):
        self._begin()
        read = self._stream.read
        buf = self._buf
        self._buf = b""
        base = self._base
        pos = 0
        n = len(buf)
        o = self._order
        secifs = self._secifs
        last_ts = 0.0
        blen = 0
        ifn = self._ifn
        eof = False
        while True:
            head7, head8, u32 = o.head7, o.head8, o.u32
            cur = -1  # interface id cached in gi/lt/units/offt/ck
            gi = lt = units = offt = 0
            ck = False
            try:
                while True:
                    # fast path: enhanced packet blocks wholly inside the buffer, of a declared
                    # interface, with a usable timestamp.  The trailer of a block is read together
                    # with the header of the next one (one unpack).
                    if pos + 28 <= n:
                        btype, blen, iid, hi, lo, caplen, wirelen = head7(buf, pos)
                        while btype == 6:
                            end = pos + blen
                            if end > n or blen & 3 or caplen > blen - 32:
                                break
                            if iid != cur:
                                if iid >= len(secifs):
                                    break
                                gi, lt, units, offt, _snap = secifs[iid]
                                ck = lt in COOKED_LINKTYPES
                                cur = iid
                            ts = (((hi << 32) | lo) + offt) / units
                            if not 0.0 <= ts < TS_LIMIT:
                                break
                            if blen - caplen > 35:  # more than the padding: options follow
                                try:
                                    self._epb_options(buf, pos + 28 + ((caplen + 3) & -4),
                                                      end - 4, gi, o)
                                except _Corrupt:
                                    break  # the general rules skip the block (and say why)
                            rec = (ts, lt, buf[pos + 28:pos + 28 + caplen], wirelen, base + pos,
                                   gi)
                            if end + 28 <= n:
                                trailer, btype, nblen, iid, hi, lo, caplen, wirelen = head8(
                                    buf, end - 4)
                                if trailer != blen:
                                    raise _Corrupt(f"block trailer length {trailer} differs from "
                                                   f"block length {blen} (block type 0x6)")
                                ifn[gi] += 1
                                if ck:
                                    self._cook(gi, lt, rec[2], 0, None)
                                last_ts = ts
                                yield rec
                                pos = end
                                blen = nblen
                            else:
                                trailer = u32(buf, end - 4)[0]
                                if trailer != blen:
                                    raise _Corrupt(f"block trailer length {trailer} differs from "
                                                   f"block length {blen} (block type 0x6)")
                                ifn[gi] += 1
                                if ck:
                                    self._cook(gi, lt, rec[2], 0, None)
                                last_ts = ts
                                yield rec
                                pos = end
                                break
                    # slow path: one block of any other kind, or more data needed
                    if pos + 12 <= n:
                        end, rec = self._block(buf, pos, n, base, last_ts, eof)
                        if end is not None:
                            o = self._order
                            head7, head8, u32 = o.head7, o.head8, o.u32
                            secifs = self._secifs
                            cur = -1
                            if rec is not None:
                                last_ts = rec[0]
                                yield rec
                            pos = end
                            continue
                        blen = rec
                        need = pos + blen - n
                    else:
                        need = 12 - (n - pos)
                    chunk = read(need if need > CHUNK else CHUNK)
                    if not chunk:
                        if pos < n and not eof:
                            eof = True  # once more, knowing that the data ends here
                            continue
                        if pos < n:
                            found = self._end(buf, pos, n, base, last_ts or None)
                            if found is not None:
                                pos = found
                                continue
                        self._eof(base + n)
                        return
                    buf = buf[pos:] + chunk if pos < n else chunk
                    base += pos
                    pos = 0
                    n = len(buf)
                    if self._pending is not None:
                        self._settle(buf, 0, n)
            except _Corrupt as exc:
                reason = str(exc)
            except (struct.error, IndexError, ValueError, OverflowError) as exc:
                reason = f"malformed block ({exc})"
            # framing broken at pos: skip to the next valid chain of blocks
            skipped, buf, eof = self._recover(buf[pos:], base + pos, reason, last_ts or None)
            base += pos + skipped
            pos = 0
            n = len(buf)
            if eof:
                self._eof(base)
                return
            o = self._order
            secifs = self._secifs


# -- the batched walk (Ethernet records a chunk at a time: dissect.vpn.batch) ------------------


def _readinto_of(stream):
    """``stream.readinto``, or an equivalent made from ``read`` for streams without it."""
    readinto = getattr(stream, "readinto", None)
    if readinto is not None:
        return readinto
    read = stream.read

    def readinto(b):
        data = read(len(b))
        b[:len(data)] = data
        return len(data)

    return readinto


class _Batcher:
    """What the batched walks of both formats share: one reused buffer (``LEAD`` free bytes, then
    the data ``buf[pos:n]``, then ``SLACK`` bytes of slack so that windows past a short last
    record stay inside it), the counters of ``walk_stats``, and the hand-over of a classified run
    of records in file order."""

    LEAD = 8  # >= dissect.vpn.batch.LEAD

    def __init__(self, reader, tag, on_batch, on_frame, on_checkpoint, every):
        self._hand_over(tag, on_batch, on_frame, on_checkpoint, every)
        vec = self.vec
        self.readinto = _readinto_of(reader._stream)
        head = reader._buf
        reader._buf = b""
        self.size = max(BATCH_CHUNK, len(head))
        self.buf = bytearray(self.LEAD + self.size + vec.SLACK)
        self.n = self.LEAD + len(head)
        self.buf[self.LEAD:self.n] = head
        self.mv = memoryview(self.buf)
        self.base = reader._base - self.LEAD  # file offset of buf[0]
        self.pos = self.LEAD
        self.eof = False

    def _hand_over(self, tag, on_batch, on_frame, on_checkpoint, every):
        """What :meth:`push` needs besides the buffer: the callbacks and the walk's counters
        (``pcapvpn.live.batch`` hands ring blocks over with it)."""
        from dissect.vpn import batch as vec

        self.vec = vec
        self.np = vec.np
        self.tag = tag
        self.on_batch = on_batch
        self.on_frame = on_frame
        self.on_checkpoint = on_checkpoint
        self.every = every
        #: IPv4 TCP of the common shape with its header decoded (PcapReader.walk's ``on_tcp``),
        #: and the link type of the records (one for the file); None: on_frame only
        self.on_tcp = None
        self.tcp_lt = None
        #: the rows of the chunk being handed over, as classify read them (fields["words"])
        self.words = None
        self.number = 0
        self.nbytes = 0
        self.trunc = 0
        self.tmax = float("-inf")
        self.tmin = float("inf")
        self.disorder = 0
        self.first = None
        #: the timestamp of the last packet record handed over, in file order (None: none yet)
        self.last = None
        self.lts: dict = {}

    def fill(self):
        """Read until the buffer is full or the stream ends."""
        top = self.LEAD + self.size
        readinto = self.readinto
        mv = self.mv
        n = self.n
        while not self.eof and n < top:
            got = readinto(mv[n:top])
            if not got:
                self.eof = True
            n += got
        self.n = n

    def slide(self, need):
        """Keep ``buf[pos:n]`` at the front, with room for ``need`` bytes from there."""
        pos, n, lead = self.pos, self.n, self.LEAD
        left = n - pos
        rest = bytes(self.mv[pos:n])
        if need > self.size:
            # one record larger than the buffer: grow it to hold that record
            self.size = need
            self.mv.release()
            self.buf = bytearray(lead + need + self.vec.SLACK)
            self.mv = memoryview(self.buf)
        self.buf[lead:lead + left] = rest
        self.base += pos - lead
        self.n = lead + left
        self.pos = lead

    def reset(self, rest, base):
        """Go on with ``rest`` (bytes that start at file offset ``base``) after a damaged
        range; the stream continues after them."""
        lead = self.LEAD
        if len(rest) > self.size:
            self.size = len(rest)
            self.mv.release()
            self.buf = bytearray(lead + self.size + self.vec.SLACK)
            self.mv = memoryview(self.buf)
        self.buf[lead:lead + len(rest)] = rest
        self.n = lead + len(rest)
        self.pos = lead
        self.base = base - lead
        self.eof = False

    def last_or(self, default):
        return self.last if self.last is not None else default

    def skip(self, count, first, step):
        """``count`` records that use up frame numbers but are not handed over (damaged records
        Wireshark shows), the first at file offset ``first``, each ``step`` bytes long."""
        number = self.number
        if self.on_checkpoint is not None:
            every = self.every
            for num in range(number + every - (number & (every - 1)), number + count + 1, every):
                self.on_checkpoint(num, first + (num - number - 1) * step)
        self.number = number + count

    def push(self, offs, skip, res, lt, ifs=0, row0=0):
        """Hand over the records at ``offs`` (positions in ``buf``; the frame ``skip`` bytes on),
        classified (``res``: :func:`dissect.vpn.batch.classify`); ``lt`` their linktype (an int,
        or an array per record); ``ifs`` their global interface index (the same: an int or an
        array); ``row0``: the first record's row in the classification of its chunk
        (``words``, read again by the TCP lane)."""
        np = self.np
        ts, cap, wire, other, inert, b4, b6 = res
        k = len(offs)
        number = self.number
        base = self.base
        self.nbytes += int(cap.sum())
        self.trunc += int(np.count_nonzero(wire > cap))
        if self.first is None:
            self.first = float(ts[0])
        self.last = float(ts[-1])
        tmax = self.tmax
        cm = np.maximum.accumulate(ts)
        if cm[0] < tmax:
            cm = np.maximum(cm, tmax)
        late = ts[1:] < cm[:-1]
        first_late = bool(ts[0] < tmax)
        nlate = int(np.count_nonzero(late)) + first_late
        if nlate:
            self.disorder += nlate
            lo = float(ts[1:][late].min()) if nlate > first_late else self.tmin
            if first_late:
                lo = min(lo, float(ts[0]))
            self.tmin = min(self.tmin, lo)
        self.tmax = max(tmax, float(cm[-1]))
        lts = self.lts
        if isinstance(lt, int):
            lts[lt] = lts.get(lt, 0) + k
        else:
            for v, c in zip(*np.unique(lt, return_counts=True)):
                lts[int(v)] = lts.get(int(v), 0) + int(c)
        every = self.every
        if self.on_checkpoint is not None:
            for num in range(number + every - (number & (every - 1)), number + k + 1, every):
                self.on_checkpoint(num, base + offs[num - number - 1])
        tag = self.tag
        on_batch = self.on_batch
        if not len(other):
            for b in (b4, b6):
                if b is not None:
                    on_batch(tag, b[0])
        else:
            done = [0, 0]
            pend = (b4, b6)

            def flush(r):
                for j in (0, 1):
                    b = pend[j]
                    if b is not None:
                        stop = int(np.searchsorted(b[1], r)) if r >= 0 else len(b[1])
                        if stop > done[j]:
                            on_batch(tag, b[0].take(slice(done[j], stop)))
                            done[j] = stop

            on_frame = self.on_frame
            mv = self.mv
            lts_o = [lt] * len(other) if isinstance(lt, int) else lt[other].tolist()
            ifs_o = [ifs] * len(other) if isinstance(ifs, int) else ifs[other].tolist()
            # an inert record earlier than something before it: ESP pending before it may carry
            # the latest time so far, which the decoder's fragment clock must have seen first
            inert = inert & (ts[other] >= cm[other])
            on_tcp = self.on_tcp
            if on_tcp is not None and skip == 16 and isinstance(lt, int):
                self._push_tcp(offs, other, inert, ts, cap, wire, lts_o, ifs_o, flush, row0)
            else:
                for r, t, c, w, quiet, ltr, ifr in zip(other.tolist(), ts[other].tolist(),
                                                       cap[other].tolist(), wire[other].tolist(),
                                                       inert.tolist(), lts_o, ifs_o):
                    if not quiet:
                        flush(r)
                    o = offs[r] + skip
                    on_frame(tag, number + r + 1, t, ltr, bytes(mv[o:o + c]), w,
                             base + offs[r], ifr)
            flush(-1)
        self.number = number + k

    def _push_tcp(self, offs, other, inert, ts, cap, wire, lts_o, ifs_o, flush, row0=0):
        """The loop of :meth:`push` over the records ``other`` that are not ESP: runs of IPv4
        TCP segments of the common shape (:func:`dissect.vpn.batch.plain_tcp`) on none of the
        ports of ``on_tcp`` and whose payload cannot start a VPN stream go to ``on_tcp`` a run at
        a time; the rest, and runs ``on_tcp`` declines, to ``on_frame``.  A run ``on_tcp`` takes
        is plaintext, which makes no ESP event (inert: pending ESP may wait)."""
        np = self.np
        tag, number, base, mv = self.tag, self.number, self.base, self.mv
        on_frame = self.on_frame
        ports, run_tcp = self.on_tcp
        oo = offs[other] if isinstance(offs, np.ndarray) else [offs[r] for r in other.tolist()]
        caps = cap[other]
        f = self.vec.plain_tcp(self.buf, oo, self.tcp_lt, caps, ports, self.words,
                               other + row0 if self.words is not None else None)
        lane = f["ok"] & ~f["start"]
        others = other.tolist()
        tso = ts[other].tolist()
        capo = caps.tolist()
        wireo = wire[other].tolist()
        quiet = inert.tolist()
        oo = list(oo) if not isinstance(oo, list) else oo
        # runs of lane records: [a, b) positions in ``other``
        edges = np.flatnonzero(np.diff(np.concatenate(([False], lane, [False])).astype(np.int8)))
        starts, stops = edges[0::2].tolist(), edges[1::2].tolist()
        fr = None
        if starts:
            fr = {k: f[k].tolist() for k in ("seq", "ack", "flags", "poff")}
            fr["frame"] = (np.asarray(oo, dtype=np.int64) + 16).tolist()
            arrays = [k for k in ("src", "dst", "sport", "dport", "poff", "end", "ifindex",
                                  "hatype", "pkttype") if k in f]
            fr["number"] = (other + (number + 1)).tolist()
            l4 = f["l4"]
        i = 0
        starts.append(len(others))
        stops.append(len(others))
        for a, b in zip(starts, stops):
            for x in range(i, a):  # records between the runs: one at a time
                r = others[x]
                if not quiet[x]:
                    flush(r)
                o = oo[x] + 16
                on_frame(tag, number + r + 1, tso[x], lts_o[x], bytes(mv[o:o + capo[x]]),
                         wireo[x], base + oo[x], ifs_o[x])
            if a >= b:
                break
            run = {k: v[a:b] for k, v in fr.items()}
            run["l4"] = l4
            run["ts"] = tso[a:b]
            run["arrays"] = {k: f[k][a:b] for k in arrays}
            if not run_tcp(tag, self.tcp_lt, ifs_o[a:b], self.buf, run):
                for x in range(a, b):
                    r = others[x]
                    flush(r)
                    o = oo[x] + 16
                    on_frame(tag, number + r + 1, tso[x], lts_o[x], bytes(mv[o:o + capo[x]]),
                             wireo[x], base + oo[x], ifs_o[x])
            i = b

    def one(self, rec):
        """A record read one at a time (a ``records()`` tuple)."""
        ts, lt, data, wirelen, offset, iface = rec
        self.number += 1
        number = self.number
        if self.on_checkpoint is not None and not number & (self.every - 1):
            self.on_checkpoint(number, offset)
        if lt == NONPACKET:
            return
        self.lts[lt] = self.lts.get(lt, 0) + 1
        if self.first is None:
            self.first = ts
        self.last = ts
        self.nbytes += len(data)
        if wirelen > len(data):
            self.trunc += 1
        if ts >= self.tmax:
            self.tmax = ts
        else:
            self.disorder += 1
            if ts < self.tmin:
                self.tmin = ts
        self.on_frame(self.tag, number, ts, lt, data, wirelen, offset, iface)

    def stats(self) -> dict:
        return _walk_stats(self.number, self.nbytes, self.trunc, self.first, self.tmin, self.tmax,
                           self.disorder, self.lts)


def _part(res, i, j, np):
    """:func:`dissect.vpn.batch.classify`'s result for records ``i`` to ``j`` (exclusive) only,
    positions counted from ``i`` (the batches' frame numbers are absolute and stay)."""
    ts, cap, wire, other, inert, b4, b6 = res
    lo, hi = int(np.searchsorted(other, i)), int(np.searchsorted(other, j))

    def batch(b):
        if b is None:
            return None
        a, z = int(np.searchsorted(b[1], i)), int(np.searchsorted(b[1], j))
        return (b[0].take(slice(a, z)), b[1][a:z] - i) if z > a else None

    return (ts[i:j], cap[i:j], wire[i:j], other[lo:hi] - i, inert[lo:hi], batch(b4),
            batch(b6))



# -- writers ----------------------------------------------------------------------------------


def _ticks(ts, units: int) -> int:
    """Timestamp (float seconds, or int nanoseconds) to integer ticks of ``units`` per second."""
    if isinstance(ts, int):
        return ts * units // 1000000000
    sec = int(ts // 1)
    frac = ts - sec  # exact for floats
    return sec * units + round(frac * units)


def _pad4(b: bytes) -> bytes:
    return b + b"\x00" * (-len(b) & 3)


class PcapngWriter:
    """Write a pcapng section: SHB on creation, then IDBs, EPBs and ISBs (little-endian)."""

    __slots__ = ("_write", "snaplen", "_ifaces")

    def __init__(self, stream, snaplen: int = 262144, userappl: str | None = "pcapvpn"):
        self._write = stream.write
        self.snaplen = snaplen
        self._ifaces = []
        opts = b""
        if userappl:
            opts = self._opt(4, userappl.encode()) + self._opt(0, b"")
        self._block(_SHB, struct.pack("<IHHq", _BOM, 1, 0, -1) + opts)

    @staticmethod
    def _opt(code: int, value: bytes) -> bytes:
        return struct.pack("<HH", code, len(value)) + _pad4(value)

    def _block(self, btype: int, body: bytes):
        body = _pad4(body)
        blen = 12 + len(body)
        self._write(struct.pack("<II", btype, blen) + body + struct.pack("<I", blen))

    def add_interface(self, linktype: int, name: str | None = None, tsresol: int = 9,
                      tsoffset: int = 0, description: str | None = None) -> int:
        """Write an IDB; return its interface id.  ``tsresol`` is the raw if_tsresol byte."""
        opts = b""
        if name:
            opts += self._opt(2, name.encode())
        if description:
            opts += self._opt(3, description.encode())
        if tsresol != 6:
            opts += self._opt(9, bytes([tsresol]))
        if tsoffset:
            opts += self._opt(14, struct.pack("<q", tsoffset))
        if opts:
            opts += self._opt(0, b"")
        self._block(_B_IDB, struct.pack("<HHI", linktype, 0, self.snaplen) + opts)
        self._ifaces.append((_units(tsresol), tsoffset))
        return len(self._ifaces) - 1

    def write_packet(self, iface: int, ts, data: bytes, wirelen: int | None = None,
                     comment: str | None = None):
        """Write an EPB.  ``ts`` is float seconds or int nanoseconds since the epoch."""
        units, tsoffset = self._ifaces[iface]
        ticks = _ticks(ts, units) - tsoffset * units
        if wirelen is None:
            wirelen = len(data)
        if self.snaplen and len(data) > self.snaplen:
            data = data[:self.snaplen]
        body = struct.pack("<IIIII", iface, (ticks >> 32) & 0xFFFFFFFF, ticks & 0xFFFFFFFF,
                           len(data), wirelen) + _pad4(bytes(data))
        if comment:
            body += self._opt(1, comment.encode()) + self._opt(0, b"")
        self._block(_B_EPB, body)

    def write_stats(self, iface: int, ts, starttime=None, endtime=None, **counters: int):
        """Write an ISB; counters among ifrecv, ifdrop, filteraccept, osdrop, usrdeliv;
        ``starttime`` / ``endtime``: when the capture on this interface started and stopped
        (isb_starttime, isb_endtime)."""
        units, tsoffset = self._ifaces[iface]
        ticks = _ticks(ts, units) - tsoffset * units
        codes = {v: k for k, v in _ISB_COUNTERS.items()}
        opts = b""
        for code, t in ((2, starttime), (3, endtime)):
            if t is not None:
                tt = _ticks(t, units) - tsoffset * units
                opts += self._opt(code, struct.pack("<II", (tt >> 32) & 0xFFFFFFFF,
                                                    tt & 0xFFFFFFFF))
        for key, value in counters.items():
            opts += self._opt(codes[key], struct.pack("<Q", value))
        if opts:
            opts += self._opt(0, b"")
        self._block(_B_ISB, struct.pack("<III", iface, (ticks >> 32) & 0xFFFFFFFF,
                                        ticks & 0xFFFFFFFF) + opts)


class PcapWriter:
    """Write a classic little-endian pcap file (micro- or nanosecond timestamps)."""

    __slots__ = ("_write", "linktype", "snaplen", "_units", "_rec")

    def __init__(self, stream, linktype: int, nanosecond: bool = False, snaplen: int = 262144):
        self._write = stream.write
        self.linktype = linktype
        self.snaplen = snaplen
        self._units = 1000000000 if nanosecond else 1000000
        self._rec = struct.Struct("<IIII").pack
        magic = _PCAP_NSEC if nanosecond else _PCAP_USEC
        self._write(struct.pack("<IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype))

    def write_packet(self, ts, data: bytes, wirelen: int | None = None):
        """Write one record.  ``ts`` is float seconds or int nanoseconds since the epoch."""
        sec, frac = divmod(_ticks(ts, self._units), self._units)
        if wirelen is None:
            wirelen = len(data)
        if self.snaplen and len(data) > self.snaplen:
            data = data[:self.snaplen]
        self._write(self._rec(sec, frac, len(data), wirelen) + data)
