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

Modules
-------
This package's ``__init__`` sniffs the format (:func:`open_capture`) and re-exports the public
names; the rest lives in:

* ``common``: sizes and bounds, the format constants, :class:`Interface`, the walk counters;
* ``damage``: :class:`Damage` and the reasons of damaged ranges;
* ``reader``: the base of both readers: damage bookkeeping, resynchronisation after damage
  (:mod:`dissect.vpn.chain`), the generic push walk, the chunked reading of the stream;
* ``pcap``: :class:`PcapReader` (records, the copy-free walk);
* ``pcapng``: :class:`PcapngReader` (sections, interfaces, blocks, records);
* ``walk`` and ``batcher``: the batched walks of both formats (the ESP hot path with
  :mod:`dissect.vpn.batch`; numpy is imported only when one runs);
* ``writers``: :class:`PcapngWriter`, :class:`PcapWriter`.
"""

from __future__ import annotations

import struct

from dissect.vpn.capture.batcher import BATCH_CHUNK
from dissect.vpn.capture.common import (
    _PCAP_NSEC,
    _PCAP_USEC,
    BATCH_RECORDS,
    MAX_RECORD,
    NONPACKET,
    RECORD_HEAD,
    TS_LIMIT,
    Interface,
    Stream,
    _read_exact,
    record_data,
)
from dissect.vpn.capture.damage import DAMAGE_KEEP, Damage
from dissect.vpn.capture.pcap import PcapReader
from dissect.vpn.capture.pcapng import PcapngReader
from dissect.vpn.capture.reader import CHUNK
from dissect.vpn.capture.writers import PcapngWriter, PcapWriter
from dissect.vpn.errors import DissectError

__all__ = [
    "BATCH_CHUNK",
    "BATCH_RECORDS",
    "CHUNK",
    "DAMAGE_KEEP",
    "Damage",
    "NONPACKET",
    "MAX_RECORD",
    "RECORD_HEAD",
    "TS_LIMIT",
    "Interface",
    "PcapReader",
    "PcapngReader",
    "PcapWriter",
    "PcapngWriter",
    "open_capture",
    "record_data",
]

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


def _what_is(head: bytes) -> str:
    for prefix, name in _LOOKALIKES:
        if head.startswith(prefix):
            return name
    return ""


def open_capture(stream: Stream) -> PcapReader | PcapngReader:
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
