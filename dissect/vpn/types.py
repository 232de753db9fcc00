"""Type names shared by the dissectors (annotations only: nothing here runs per packet)."""

from __future__ import annotations

from typing import Union

__all__ = ["Buffer"]

#: what a dissector reads: the captured bytes, or a view / buffer into them
Buffer = Union[bytes, bytearray, memoryview]
