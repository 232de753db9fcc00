"""The base class of dissect.vpn's named protocol numbers.

Each protocol number is written once, as a member of an ``IntEnum`` subclass of :class:`Number`:
the IKE registries in :mod:`dissect.vpn.registry` (``ExchangeType``, ``NotifyV2`` ...), the IP
protocol numbers, well-known ports and TCP flags in :mod:`dissect.vpn.ip`.  Code that branches on
a number compares with the member (``msg.exch == ExchangeType.IKE_SA_INIT``); the per-packet hot
paths bind ``int(member)`` to a module constant once, so that they compare plain ints.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["Number"]


class Number(IntEnum):
    """A protocol number with its name.

    Members are the numbers: they compare, hash and format as plain ``int`` (``str()`` gives the
    number on Python 3.10 as on 3.11), so a member stands wherever the number stood and never
    changes an output; ``repr()`` names it.  Parsed fields stay plain ints.
    """

    __str__ = int.__repr__

    def __format__(self, spec: str) -> str:
        return int.__format__(self, spec)
