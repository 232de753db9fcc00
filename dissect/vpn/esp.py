"""ESP (RFC 4303) and AH (RFC 4302) headers.

Hot path: :func:`parse_esp` reads two 32-bit words and returns a tuple; nothing is copied.
"""

from __future__ import annotations

import struct

from .errors import DissectError
from .types import Buffer

__all__ = ["parse_esp", "parse_ah", "esp_spi", "ESP_HEADER_LEN", "AH_FIXED_LEN"]

ESP_HEADER_LEN = 8   # RFC 4303 §2: SPI (4) + Sequence Number (4)
AH_FIXED_LEN = 12    # RFC 4302 §2: NH, Payload Len, Reserved (2), SPI, Sequence Number

_II = struct.Struct(">II")
_I = struct.Struct(">I")
_AH = struct.Struct(">BBHII")


def parse_esp(data: Buffer, off: int, end: int) -> tuple[int, int]:
    """``(spi, seq)`` of the ESP header at ``data[off:end]``.

    DissectError when fewer than 8 bytes are present or the SPI is 0 (RFC 4303 §2.1: reserved
    for local use, never sent).
    """
    if end - off < 8 or off < 0 or len(data) < off + 8:
        raise DissectError("ESP header truncated", off)
    spi, seq = _II.unpack_from(data, off)
    if not spi:
        raise DissectError("ESP SPI 0 is reserved (RFC 4303 §2.1)", off)
    return (spi, seq)


def esp_spi(data: Buffer, off: int) -> int:
    """The SPI of the ESP header at ``off`` (its first 4 bytes, checked by the caller), whatever
    its value (a nested ESP header is looked up among the keyed SPIs)."""
    return int(_I.unpack_from(data, off)[0])


def parse_ah(data: Buffer, off: int, end: int) -> tuple[int, int, int, int, int]:
    """``(next_header, payload_len_words, spi, seq, icv_len)`` of the AH header at
    ``data[off:end]``.

    RFC 4302 §2.2: Payload Len is the AH length in 32-bit words minus 2, so the header spans
    ``(payload_len_words + 2) * 4`` bytes and the ICV ``(payload_len_words + 2) * 4 - 12``.
    DissectError when the fixed 12 bytes are missing, the length is below 12, or the header
    runs past ``end``.
    """
    if end - off < AH_FIXED_LEN or off < 0 or len(data) < off + AH_FIXED_LEN:
        raise DissectError("AH header truncated", off)
    nh, plen, _resv, spi, seq = _AH.unpack_from(data, off)
    ah_len = (plen + 2) * 4
    if ah_len < AH_FIXED_LEN:
        raise DissectError(f"AH Payload Len {plen} below the fixed header", off + 1)
    if off + ah_len > end:
        raise DissectError(f"AH length {ah_len} runs past the packet", off + 1)
    return (nh, plen, spi, seq, ah_len - AH_FIXED_LEN)
