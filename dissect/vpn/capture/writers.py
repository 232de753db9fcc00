"""Writing captures: pcapng (SHB, IDB, EPB with ``opt_comment``, ISB) and classic pcap."""

from __future__ import annotations

import struct
from typing import Any, Protocol

from dissect.vpn.capture.common import (
    _B_EPB,
    _B_IDB,
    _B_ISB,
    _BOM,
    _ISB_COUNTERS,
    _PCAP_NSEC,
    _PCAP_USEC,
    _SHB,
    Timestamp,
    _units,
)
from dissect.vpn.types import Buffer


class Writable(Protocol):
    """What the writers write to: ``write(bytes)``."""

    def write(self, data: bytes, /) -> Any: ...


def _ticks(ts: Timestamp, units: int) -> int:
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

    def __init__(self, stream: Writable, snaplen: int = 262144,
                 userappl: str | None = "pcapvpn") -> None:
        self._write = stream.write
        self.snaplen = snaplen
        self._ifaces: list[tuple[int, int]] = []
        opts = b""
        if userappl:
            opts = self._opt(4, userappl.encode()) + self._opt(0, b"")
        self._block(_SHB, struct.pack("<IHHq", _BOM, 1, 0, -1) + opts)

    @staticmethod
    def _opt(code: int, value: bytes) -> bytes:
        return struct.pack("<HH", code, len(value)) + _pad4(value)

    def _block(self, btype: int, body: bytes) -> None:
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

    def write_packet(self, iface: int, ts: Timestamp, data: Buffer, wirelen: int | None = None,
                     comment: str | None = None) -> None:
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

    def write_stats(self, iface: int, ts: Timestamp, starttime: Timestamp | None = None,
                    endtime: Timestamp | None = None, **counters: int) -> None:
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

    def __init__(self, stream: Writable, linktype: int, nanosecond: bool = False,
                 snaplen: int = 262144) -> None:
        self._write = stream.write
        self.linktype = linktype
        self.snaplen = snaplen
        self._units = 1000000000 if nanosecond else 1000000
        self._rec = struct.Struct("<IIII").pack
        magic = _PCAP_NSEC if nanosecond else _PCAP_USEC
        self._write(struct.pack("<IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype))

    def write_packet(self, ts: Timestamp, data: Buffer, wirelen: int | None = None) -> None:
        """Write one record.  ``ts`` is float seconds or int nanoseconds since the epoch."""
        sec, frac = divmod(_ticks(ts, self._units), self._units)
        if wirelen is None:
            wirelen = len(data)
        if self.snaplen and len(data) > self.snaplen:
            data = data[:self.snaplen]
        self._write(self._rec(sec, frac, len(data), wirelen) + data)
