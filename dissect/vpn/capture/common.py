"""What the capture readers share: sizes and bounds, the format constants, an interface, the
walk counters."""

from __future__ import annotations

from typing import Any, Callable, Protocol, Union

from dissect.vpn.types import Buffer


class Stream(Protocol):
    """What the readers read from: ``read(n)`` (short reads allowed; empty at the end)."""

    def read(self, n: int, /) -> bytes | bytearray | None: ...


#: what the readers hold read data in (the batched walks: a reused bytearray)
Bytes = Union[bytes, bytearray]
#: one record of ``records()``: ``(ts, linktype, data, wirelen, offset, iface)``
Record = tuple[float, int, Buffer, int, int, int]
#: the callbacks of the walks (``walk``): ``on_esp(ref, ts, 4, src, dst, sport, dport, spi, seq,
#: esp_len)``, ``on_frame(tag, number, ts, linktype, data, wirelen, offset, iface)``,
#: ``on_checkpoint(number, offset)``, ``on_batch(tag, batch)``
Callback = Callable[..., Any]
#: ``walk_stats``: the counters a walk leaves
WalkStats = dict[str, Any]
#: a timestamp: float seconds, or int nanoseconds (the writers)
Timestamp = Union[float, int]

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


def _read_exact(stream: Stream, n: int) -> bytes:
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


def _units(tsresol: int) -> int:
    """Ticks per second for a pcapng ``if_tsresol`` byte."""
    if tsresol & 0x80:
        return 1 << (tsresol & 0x7F)
    units: int = 10 ** tsresol
    return units


class Interface:
    """One capture interface: a pcapng IDB, or the classic pcap file header.

    ``tsresol`` is the raw ``if_tsresol`` byte (6 = microseconds, 9 = nanoseconds, 0x94 = 2^-20),
    ``units`` the ticks per second it means, ``tsoffset`` seconds added to every timestamp,
    ``fcslen`` the FCS bytes at the end of each frame when the file says so (else ``None``),
    ``section`` the pcapng section number (0-based).
    """

    __slots__ = ("linktype", "snaplen", "tsresol", "tsoffset", "name", "units", "fcslen",
                 "section", "description")

    def __init__(self, linktype: int, snaplen: int, tsresol: int = 6, tsoffset: int = 0,
                 name: str | None = None, fcslen: int | None = None, section: int = 0,
                 description: str | None = None) -> None:
        self.linktype = linktype
        self.snaplen = snaplen
        self.tsresol = tsresol
        self.units = _units(tsresol)
        self.tsoffset = tsoffset
        self.name = name
        self.fcslen = fcslen
        self.section = section
        self.description = description

    def __repr__(self) -> str:
        return (f"Interface(linktype={self.linktype}, snaplen={self.snaplen}, "
                f"tsresol={self.tsresol:#x}, tsoffset={self.tsoffset}, name={self.name!r})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Interface):
            return NotImplemented
        return all(getattr(self, a) == getattr(other, a) for a in self.__slots__)

    __hash__ = None  # type: ignore[assignment]  # compared by value and mutable: unhashable


#: bytes to read from a packet record's offset (``records()``) to have its header and ``caplen``
#: bytes of data: :func:`record_data`
RECORD_HEAD = {"pcap": 16, "pcapng": 28}


def record_data(fmt: str, block: Buffer, caplen: int) -> bytes:
    """The captured bytes of the packet record whose bytes from its offset (as ``records()``
    gives it) are ``block`` (at least ``RECORD_HEAD[fmt] + caplen`` of them, fewer only at the
    end of the file): a classic pcap record's data follows its 16-byte header; a pcapng enhanced
    (and obsolete) packet block's its 28-byte header, a simple packet block's its 12-byte header
    (block types 6, 2, 3, in either byte order)."""
    if fmt == "pcap":
        skip = 16
    else:
        skip = 12 if (block[0] | block[3]) == _B_SPB else 28
    return bytes(block[skip:skip + caplen])


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
# offset in ticks given to an interface whose if_tsresol is out of range: every timestamp of it
# lands outside [0, TS_LIMIT) and its packets become damaged records
_UNUSABLE = 1 << 80


def _walk_stats(number: int, nbytes: int, trunc: int, first: float | None, tmin: float,
                tmax: float, disorder: int, lts: dict[int, int],
                back: tuple[float, int | None, float | None, int | None] = (0.0, None, None, None),
                ) -> WalkStats:
    """The counters a walk leaves (``walk_stats``).  ``back``: ``(largest step back, the frame
    number of the record that makes it, the latest time before it that it steps back from, the
    frame number of the earliest record)``; the walks fill it only where they count a record
    earlier than one before it, and where they meet their first record (nothing on the in-order
    path)."""
    frames = sum(lts.values())
    step, step_frame, step_from, earliest = back
    return {
        "frames": frames, "numbered": number, "bytes": nbytes, "truncated": trunc,
        "first_ts": min(first, tmin) if frames and first is not None else None,
        "last_ts": tmax if frames else None,
        "out_of_order": disorder, "linktypes": lts,
        # the largest step back in time: how much earlier a record is than the latest record
        # before it (0.0 in time order), the record's frame number, and that latest time
        "step_back": step, "step_frame": step_frame, "step_from_ts": step_from,
        # the frame number of the earliest record (a step back at the start of a slice of the
        # file is measured from it: pcapvpn.parallel)
        "first_frame": earliest if frames else None,
    }
