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

Problems after the file header never raise: a truncated last record, an impossible length, a
mismatched block trailer or a reference to an undeclared interface append ``(offset, reason)`` to
``reader.warnings`` and end the iteration; every record before it has been yielded.

The stream is read in ``CHUNK`` pieces; memory is bounded by one chunk plus the largest record.

Writing
-------
``PcapngWriter`` (SHB, IDB, EPB with ``opt_comment``, ISB) and ``PcapWriter`` (classic pcap).
"""

from __future__ import annotations

import struct

from dissect.vpn import fast as _fast
from dissect.vpn.errors import DissectError

__all__ = [
    "CHUNK",
    "NONPACKET",
    "MAX_RECORD",
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


class _Reader:
    __slots__ = ("_stream", "_buf", "_base", "_started", "format", "interfaces", "isb",
                 "warnings", "drops", "byteorder", "version", "walk_stats", "ended")

    def _begin(self):
        if self._started:
            raise RuntimeError("records() can be iterated only once (the stream is consumed)")
        self._started = True


    def walk(self, tag, on_esp, on_frame, on_checkpoint=None, every=1024, on_batch=None):
        """Push every record instead of yielding it (the analysis hot path).

        Ethernet frames carrying ESP or UDP-4500 ESP of the common shape
        (:func:`dissect.vpn.fast.esp_at`) go to ``on_esp((tag, number), ts, 4, src, dst, sport,
        dport, spi, seq, esp_len)`` — the argument list of the ESP event of docs/internals.md —
        without a record tuple; every other record to ``on_frame(tag, number, ts, linktype, data,
        wirelen, offset)``.  Numbers are 1-based as Wireshark's; non-packet records use up their
        number.  Counters are left in ``walk_stats``: ``frames``, ``bytes`` (captured),
        ``first_ts``/``last_ts`` (earliest/latest), ``out_of_order``, ``truncated`` (captured <
        original length), ``linktypes`` (dict linktype -> frames).  ``on_checkpoint(number,
        offset)`` is called for every ``every``-th record (``every`` a power of two) so that
        frames can be found again later.

        This generic version rides on :meth:`records` and ignores ``on_batch``;
        :class:`PcapReader` has a copy-free one, and a batched one for ``on_batch``.
        """
        mask = every - 1 if on_checkpoint is not None else -1
        esp_at = _fast.esp_at
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
            for ts, lt, data, wirelen, offset, _iface in self.records():
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
                on_frame(tag, number, ts, lt, data, wirelen, offset)
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
        self.warnings = []
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

    def records(self):
        self._begin()
        read = self._stream.read
        unpack = struct.Struct(self.byteorder + "IIII").unpack_from
        lt = self.linktype
        div = 1000000000 if self.nanosecond else 1000000
        snap = self.snaplen
        maxcap = MAX_RECORD if not snap else min(MAX_RECORD, max(2 * snap, 262144))
        warnings = self.warnings
        buf = self._buf
        base = self._base
        pos = 0
        n = len(buf)
        need = CHUNK
        self._buf = b""
        while True:
            while pos + 16 <= n:
                sec, frac, caplen, wirelen = unpack(buf, pos)
                if caplen > maxcap:
                    warnings.append((base + pos, f"corrupt record: captured length {caplen} "
                                     f"(snaplen {snap}); rest of file ignored"))
                    return
                end = pos + 16 + caplen
                if end > n:
                    need = end - n
                    break
                yield (sec * div + frac) / div, lt, buf[pos + 16:end], wirelen, base + pos, 0
                pos = end
            else:
                need = 16 - (n - pos)
            chunk = read(need if need > CHUNK else CHUNK)
            if not chunk:
                if pos < n:
                    left = n - pos
                    reason = _pcap_tail(left, unpack(buf, pos)[2] if left >= 16 else 0)
                    warnings.append((base + pos, reason))
                return
            buf = buf[pos:] + chunk if pos < n else chunk
            base += pos
            pos = 0
            n = len(buf)
            need = CHUNK


    def walk(self, tag, on_esp, on_frame, on_checkpoint=None, every=1024, on_batch=None):
        """Copy-free :meth:`_Reader.walk`: ESP of the common shape is recognised where it lies
        in the read buffer, so no bytes object or tuple is made for it.

        With ``on_batch`` (Ethernet captures): a chunk of records at a time, ESP of the common
        shapes recognised with array operations (:mod:`dissect.vpn.batch`) and handed over as
        :class:`~dissect.vpn.batch.EspBatch` objects — ``on_batch(tag, batch)`` — instead of one
        ``on_esp`` call per packet.  Every other record goes to ``on_frame`` as without it, in
        file order; ESP pending from the same chunk is delivered first unless the record is
        inert for ESP (:func:`dissect.vpn.batch.classify`), so each SA sees its packets in order.
        """
        if on_batch is not None and self.linktype == 1:
            self._walk_batch(tag, on_batch, on_frame, on_checkpoint, every)
            return
        self._begin()
        mask = every - 1 if on_checkpoint is not None else -1
        read = self._stream.read
        unpack = struct.Struct(self.byteorder + "IIII").unpack_from
        esp_at = _fast.esp_at
        lt = self.linktype
        eth = lt == 1
        div = 1000000000 if self.nanosecond else 1000000
        snap = self.snaplen
        maxcap = MAX_RECORD if not snap else min(MAX_RECORD, max(2 * snap, 262144))
        warnings = self.warnings
        buf = self._buf
        base = self._base
        pos = 0
        n = len(buf)
        need = CHUNK
        self._buf = b""
        number = 0
        nbytes = 0
        trunc = 0
        tmax = float("-inf")
        tmin = float("inf")
        disorder = 0
        first = None
        try:
            while True:
                while pos + 16 <= n:
                    sec, frac, caplen, wirelen = unpack(buf, pos)
                    if caplen > maxcap:
                        warnings.append((base + pos, f"corrupt record: captured length {caplen} "
                                         f"(snaplen {snap}); rest of file ignored"))
                        return
                    end = pos + 16 + caplen
                    if end > n:
                        need = end - n
                        break
                    number += 1
                    if not number & mask:
                        on_checkpoint(number, base + pos)
                    nbytes += caplen
                    ts = (sec * div + frac) / div
                    if number == 1:
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
                    on_frame(tag, number, ts, lt, buf[pos + 16:end], wirelen, base + pos)
                    pos = end
                else:
                    need = 16 - (n - pos)
                chunk = read(need if need > CHUNK else CHUNK)
                if not chunk:
                    if pos < n:
                        left = n - pos
                        reason = _pcap_tail(left, unpack(buf, pos)[2] if left >= 16 else 0)
                        warnings.append((base + pos, reason))
                    return
                buf = buf[pos:] + chunk if pos < n else chunk
                base += pos
                pos = 0
                n = len(buf)
                need = CHUNK
        finally:
            self.walk_stats = _walk_stats(number, nbytes, trunc, first, tmin, tmax, disorder,
                                          {lt: number} if number else {})

    def _walk_batch(self, tag, on_batch, on_frame, on_checkpoint, every):
        self._begin()
        bt = _Batcher(self, tag, on_batch, on_frame, on_checkpoint, every)
        np = bt.np
        classify = bt.vec.classify
        caplen_at = struct.Struct(self.byteorder + "8xI").unpack_from
        order = self.byteorder
        nanosecond = self.nanosecond
        snap = self.snaplen
        maxcap = MAX_RECORD if not snap else min(MAX_RECORD, max(2 * snap, 262144))
        warnings = self.warnings
        try:
            while True:
                bt.fill()
                buf = bt.buf
                n = bt.n
                pos = bt.pos
                offs = []
                app = offs.append
                # the record walk: nothing but lengths (the slack after n makes the read safe)
                while True:
                    end = pos + 16 + caplen_at(buf, pos)[0]
                    if end > n:
                        break
                    app(pos)
                    pos = end
                bt.pos = pos
                corrupt = None
                if pos + 16 <= n and caplen_at(buf, pos)[0] > maxcap:
                    corrupt = (bt.base + pos, caplen_at(buf, pos)[0])
                if offs:
                    res = classify(buf, offs, order, nanosecond, bt.number)
                    big = np.flatnonzero(res[1] > maxcap)
                    if len(big):
                        # an impossible length: what comes before it is analysed, nothing after
                        k = int(big[0])
                        corrupt = (bt.base + offs[k], int(res[1][k]))
                        res = _cut(res, k, np)
                        del offs[k:]
                    if offs:
                        bt.push(offs, 16, res, 1)
                if corrupt is not None:
                    warnings.append((corrupt[0], f"corrupt record: captured length {corrupt[1]} "
                                     f"(snaplen {snap}); rest of file ignored"))
                    return
                if bt.eof:
                    if pos < n:
                        left = n - pos
                        reason = _pcap_tail(left, caplen_at(buf, pos)[0] if left >= 16 else 0)
                        warnings.append((bt.base + pos, reason))
                    return
                bt.slide(16 + caplen_at(buf, pos)[0] if n - pos >= 16 else 16)
        finally:
            self.walk_stats = bt.stats()



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



class PcapngReader(_Reader):
    """pcapng: every section (each SHB resets byte order and interfaces), EPB, SPB, PB, ISB."""

    __slots__ = ("sections", "_order", "_secifs", "_last_ts")

    def __init__(self, stream, head: bytes):
        self._stream = stream
        self._started = False
        self.format = "pcapng"
        self.interfaces = []
        self.isb = {}
        self.drops = {}
        #: pcapng ``isb_endtime``: when the capture stopped (the latest given), else None
        self.ended = None
        self.warnings = []
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

    def _interface(self, buf, pos, blen, o):
        if blen < 20:
            raise _Corrupt(f"interface description block too short ({blen} bytes)")
        linktype, _res, snaplen = o.idb(buf, pos + 8)
        tsresol = 6
        tsoffset = 0
        name = descr = None
        fcslen = None
        for code, val in self._options(buf, pos + 16, pos + blen - 4, o):
            if code == 9 and len(val) >= 1:
                tsresol = val[0]
                if (tsresol & 0x7F) > (63 if tsresol & 0x80 else 18):
                    raise _Corrupt(f"interface time resolution {tsresol:#x} is out of range")
            elif code == 14 and len(val) >= 8:
                tsoffset = o.i64(val, 0)[0]
            elif code == 2:
                name = val.decode("utf-8", "replace").rstrip("\x00")
            elif code == 3:
                descr = val.decode("utf-8", "replace").rstrip("\x00")
            elif code == 13 and len(val) >= 1:
                fcslen = val[0]
        iface = Interface(linktype, snaplen, tsresol, tsoffset, name, fcslen,
                          len(self.sections) - 1, descr)
        gi = len(self.interfaces)
        self.interfaces.append(iface)
        units = iface.units
        self._secifs.append((gi, linktype, units, tsoffset * units, snaplen))

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
        for code, val in self._options(buf, start, end, o):
            if code == 4 and len(val) >= 8:  # epb_dropcount
                self.drops[gi] = self.drops.get(gi, 0) + o.u64(val, 0)[0]

    def _epb(self, buf, pos, blen, base):
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
        if blen != 32 + ((caplen + 3) & -4):
            self._epb_options(buf, pos + 28 + ((caplen + 3) & -4), pos + blen - 4, gi, o)
        ts = (((hi << 32) | lo) + offt) / units
        return (ts, lt, buf[pos + 28:pos + 28 + caplen], wirelen, base + pos, gi)

    def _other(self, btype, buf, pos, blen, base):
        """Handle a block other than an EPB; return a record tuple or None."""
        o = self._order
        if btype == _B_IDB:
            self._interface(buf, pos, blen, o)
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
            return (self._last_ts, lt, buf[pos + 12:pos + 12 + caplen], wirelen, base + pos, gi)
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
            if dropped != 0xFFFF and dropped:
                self.drops[gi] = self.drops.get(gi, 0) + dropped
            ts = (((hi << 32) | lo) + offt) / units
            return (ts, lt, buf[pos + 28:pos + 28 + caplen], wirelen, base + pos, gi)
        elif btype == _B_ISB:
            self._stats(buf, pos, blen, o)
        elif btype in _NUMBERED:
            body = buf[pos + 8:pos + blen - 4]
            return (self._last_ts, NONPACKET, body, len(body), base + pos, -1)
        # NRB, DSB, unknown and local blocks: skipped
        return None

    def walk(self, tag, on_esp, on_frame, on_checkpoint=None, every=1024, on_batch=None):
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
        warnings = self.warnings
        last_ts = 0.0
        try:
            while True:
                bt.fill()
                buf = bt.buf
                n = bt.n
                pos = bt.pos
                hdr = self._order.hdr
                offs = []
                app = offs.append
                # a run of enhanced packet blocks: nothing but lengths (slack after n: safe)
                while True:
                    btype, blen = hdr(buf, pos)
                    if btype != 6 or blen < 32:
                        break
                    end = pos + blen
                    if end > n:
                        break
                    app(pos)
                    pos = end
                if offs:
                    k, ts = self._epb_run(bt, offs)
                    if k:
                        last_ts = ts
                    if k < len(offs):
                        pos = offs[k]  # a block the general rules must look at
                bt.pos = pos
                if pos + 12 <= n:
                    end, rec = self._block(buf, pos, n, bt.base, last_ts)
                    if end is not None:
                        bt.pos = end
                        if rec is not None:
                            last_ts = rec[0]
                            bt.one(rec)
                        continue
                    need = rec
                else:
                    need = 12
                if bt.eof:
                    if pos < n:
                        left = n - pos
                        reason = _pcapng_tail(left, need)
                        warnings.append((bt.base + pos, reason))
                    return
                bt.slide(need)
        except _Corrupt as exc:
            warnings.append((bt.base + bt.pos, f"{exc}; rest of file ignored"))
        except (struct.error, IndexError, ValueError, OverflowError) as exc:
            warnings.append((bt.base + bt.pos, f"malformed block ({exc}); rest of file ignored"))
        finally:
            self._last_ts = last_ts
            self.walk_stats = bt.stats()

    def _epb_run(self, bt, offs):
        """Classify and hand over the enhanced packet blocks at ``offs`` (whole, in the buffer);
        stop before the first one the general rules must see (bad trailer, length or
        interface).  Returns ``(blocks handed over, timestamp of the last)``."""
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
        secifs = self._secifs
        bad = ((blen & 3) != 0) | (cap > blen - 32) | (trailer != blen) | (iid >= len(secifs))
        k = int(bad.argmax()) if bad.any() else len(offs)
        if not k:
            return 0, 0.0
        if k < len(offs):
            p, head, blen, iid, cap = p[:k], head[:k], blen[:k], iid[:k], cap[:k]
            offs = offs[:k]
        ticks = (vec.field(head, 12, u4).astype(np.uint64) << np.uint64(32)) | \
            vec.field(head, 16, u4).astype(np.uint64)
        ids = np.unique(iid)
        lt = np.empty(k, dtype=np.int64)
        ts = np.empty(k, dtype=np.float64)
        for i in ids.tolist():
            gi, ltype, units, offt, _snap = secifs[i]
            sel = iid == i
            lt[sel] = ltype
            t = ticks[sel]
            if int(t.max()) + max(offt, 0) < 1 << 53 and offt >= 0 and units < 1 << 53:
                # exact: both below 2**53, where int / int is one float division
                ts[sel] = (t.astype(np.float64) + float(offt)) / float(units)
            else:
                ts[sel] = [(x + offt) / units for x in t.tolist()]
        # options (epb_dropcount) after the padded data
        opt = np.flatnonzero(blen - cap > 35)
        for j in opt.tolist():
            start = offs[j] + 28 + ((int(cap[j]) + 3) & -4)
            self._epb_options(buf, start, offs[j] + int(blen[j]) - 4, secifs[int(iid[j])][0], o)
        eth = lt == 1
        res = vec.classify(buf, p + 12, o.char, False, bt.number, ts=ts,
                           eth=None if eth.all() else eth)
        bt.push(offs, 28, res, int(lt[0]) if len(ids) == 1 else lt)
        return k, float(ts[-1])

    def _block(self, buf, pos, n, base, last_ts):
        """The block at ``buf[pos:]`` by the general rules: ``(end, record or None)``; or
        ``(None, bytes needed from pos)`` when it is not wholly in ``buf[:n]``.  A section
        header switches byte order and interfaces.  Raises :class:`_Corrupt`."""
        o = self._order
        btype, blen = o.hdr(buf, pos)
        if btype == _SHB:
            o = self._bom(buf[pos + 8:pos + 12])
            if o is None:
                raise _Corrupt(f"section header block with a bad byte-order magic "
                               f"{buf[pos + 8:pos + 12].hex()}")
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
        self._last_ts = last_ts
        if btype == _SHB:
            if blen < 28:
                raise _Corrupt(f"section header block too short ({blen} bytes)")
            self._section(buf, pos, blen, o, base)
            return end, None
        if btype == _B_EPB:
            return end, self._epb(buf, pos, blen, base)
        return end, self._other(btype, buf, pos, blen, base)

    # -- the walk ---------------------------------------------------------------------------

    def records(self):
        self._begin()
        read = self._stream.read
        warnings = self.warnings
        buf = self._buf
        self._buf = b""
        base = self._base
        pos = 0
        n = len(buf)
        o = self._order
        head7, head8, u32 = o.head7, o.head8, o.u32
        secifs = self._secifs
        cur = -1  # interface id cached in gi/lt/units/offt
        gi = lt = units = offt = 0
        last_ts = 0.0
        try:
            while True:
                # fast path: enhanced packet blocks wholly inside the buffer.  The trailer of a
                # block is read together with the header of the next one (one unpack).
                if pos + 28 <= n:
                    btype, blen, iid, hi, lo, caplen, wirelen = head7(buf, pos)
                    while btype == 6:
                        end = pos + blen
                        if end > n or blen & 3 or caplen > blen - 32:
                            break
                        if iid != cur:
                            if iid >= len(secifs):
                                raise _Corrupt(f"enhanced packet block for undeclared interface "
                                               f"{iid}")
                            gi, lt, units, offt, _snap = secifs[iid]
                            cur = iid
                        if blen - caplen > 35:  # more than the padding: options follow
                            self._epb_options(buf, pos + 28 + ((caplen + 3) & -4), end - 4, gi,
                                              o)
                        last_ts = (((hi << 32) | lo) + offt) / units
                        rec = (last_ts, lt, buf[pos + 28:pos + 28 + caplen], wirelen, base + pos,
                               gi)
                        if end + 28 <= n:
                            trailer, btype, nblen, iid, hi, lo, caplen, wirelen = head8(buf,
                                                                                        end - 4)
                            if trailer != blen:
                                raise _Corrupt(f"block trailer length {trailer} differs from "
                                               f"block length {blen} (block type 0x6)")
                            yield rec
                            pos = end
                            blen = nblen
                        else:
                            trailer = u32(buf, end - 4)[0]
                            if trailer != blen:
                                raise _Corrupt(f"block trailer length {trailer} differs from "
                                               f"block length {blen} (block type 0x6)")
                            yield rec
                            pos = end
                            break
                # slow path: one block of any other kind, or more data needed
                if pos + 12 <= n:
                    end, rec = self._block(buf, pos, n, base, last_ts)
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
                    if pos < n:
                        left = n - pos
                        reason = _pcapng_tail(left, blen if left >= 12 else 0)
                        warnings.append((base + pos, reason))
                    return
                buf = buf[pos:] + chunk if pos < n else chunk
                base += pos
                pos = 0
                n = len(buf)
        except _Corrupt as exc:
            warnings.append((base + pos, f"{exc}; rest of file ignored"))
        except (struct.error, IndexError, ValueError, OverflowError) as exc:
            warnings.append((base + pos, f"malformed block ({exc}); rest of file ignored"))


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
        from dissect.vpn import batch as vec

        self.vec = vec
        self.np = vec.np
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
        self.tag = tag
        self.on_batch = on_batch
        self.on_frame = on_frame
        self.on_checkpoint = on_checkpoint
        self.every = every
        self.number = 0
        self.nbytes = 0
        self.trunc = 0
        self.tmax = float("-inf")
        self.tmin = float("inf")
        self.disorder = 0
        self.first = None
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

    def push(self, offs, skip, res, lt):
        """Hand over the records at ``offs`` (positions in ``buf``; the frame ``skip`` bytes on),
        classified (``res``: :func:`dissect.vpn.batch.classify`); ``lt`` their linktype (an int,
        or an array per record)."""
        np = self.np
        ts, cap, wire, other, inert, b4, b6 = res
        k = len(offs)
        number = self.number
        base = self.base
        self.nbytes += int(cap.sum())
        self.trunc += int(np.count_nonzero(wire > cap))
        if self.first is None:
            self.first = float(ts[0])
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
            # an inert record earlier than something before it: ESP pending before it may carry
            # the latest time so far, which the decoder's fragment clock must have seen first
            inert = inert & (ts[other] >= cm[other])
            for r, t, c, w, quiet, ltr in zip(other.tolist(), ts[other].tolist(),
                                              cap[other].tolist(), wire[other].tolist(),
                                              inert.tolist(), lts_o):
                if not quiet:
                    flush(r)
                o = offs[r] + skip
                on_frame(tag, number + r + 1, t, ltr, bytes(mv[o:o + c]), w, base + offs[r])
            flush(-1)
        self.number = number + k

    def one(self, rec):
        """A record read one at a time (a ``records()`` tuple)."""
        ts, lt, data, wirelen, offset, _iface = rec
        self.number += 1
        number = self.number
        if self.on_checkpoint is not None and not number & (self.every - 1):
            self.on_checkpoint(number, offset)
        if lt == NONPACKET:
            return
        self.lts[lt] = self.lts.get(lt, 0) + 1
        if self.first is None:
            self.first = ts
        self.nbytes += len(data)
        if wirelen > len(data):
            self.trunc += 1
        if ts >= self.tmax:
            self.tmax = ts
        else:
            self.disorder += 1
            if ts < self.tmin:
                self.tmin = ts
        self.on_frame(self.tag, number, ts, lt, data, wirelen, offset)

    def stats(self) -> dict:
        return _walk_stats(self.number, self.nbytes, self.trunc, self.first, self.tmin, self.tmax,
                           self.disorder, self.lts)


def _cut(res, k, np):
    """:func:`dissect.vpn.batch.classify`'s result without records ``k`` and on."""
    ts, cap, wire, other, inert, b4, b6 = res
    cut = int(np.searchsorted(other, k))

    def batch(b):
        if b is None:
            return None
        stop = int(np.searchsorted(b[1], k))
        return (b[0].take(slice(0, stop)), b[1][:stop]) if stop else None

    return ts[:k], cap[:k], wire[:k], other[:cut], inert[:cut], batch(b4), batch(b6)


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
                      tsoffset: int = 0) -> int:
        """Write an IDB; return its interface id.  ``tsresol`` is the raw if_tsresol byte."""
        opts = b""
        if name:
            opts += self._opt(2, name.encode())
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
