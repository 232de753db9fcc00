"""Damaged parts of a capture: the :class:`Damage` record and the reasons the readers give."""

from __future__ import annotations

from enum import Enum
from typing import Final, Union

#: damaged ranges kept in full per reader; further ones are only counted (``damage_more``)
DAMAGE_KEEP = 1000


class _Unknown(Enum):
    UNKNOWN = 0


# "not known yet": the bytes that tell are not read yet (Damage.after)
_UNKNOWN: Final = _Unknown.UNKNOWN
#: the timestamp of the record at a position (a reader's ``_peek``): None when it is not a packet
#: record, _UNKNOWN when its header is not read yet
Peeked = Union[float, None, _Unknown]
_EMPTY = "empty record at time 0 (a zero-filled hole, not a packet)"


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

    def __init__(self, offset: int, length: int, frames: int, numbered: bool, reason: str,
                 before: float | None, after: float | None, kind: str) -> None:
        self.offset = offset
        self.length = length
        self.frames = frames
        self.numbered = numbered
        self.reason = reason
        self.before = before
        self.after = after
        self.trailing = False
        self.kind = kind

    def __repr__(self) -> str:
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


def _pcap_tail(left: int, caplen: int) -> str:
    """The warning for the last ``left`` bytes of a pcap file: a record cut off."""
    if left < 16:
        return f"truncated record header ({left} of 16 bytes) at end of file"
    return f"truncated record at end of file ({left - 16} of {caplen} captured bytes)"


def _pcapng_tail(left: int, blen: int) -> str:
    """The warning for the last ``left`` bytes of a pcapng file: a block cut off."""
    if left < 12:
        return f"truncated block header ({left} of 12 bytes) at end of file"
    return f"truncated block at end of file ({left} of {blen} bytes)"


class _Corrupt(Exception):
    pass
