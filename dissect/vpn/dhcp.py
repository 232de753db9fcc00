"""DHCPv4 (RFC 2131 over BOOTP, RFC 951; options RFC 2132): what a client was given.

:func:`parse_dhcp` reads a BOOTP message (UDP 67/68) and returns the fields that describe the
client's local network: the message type (option 53), the address assigned (``yiaddr``), the
subnet mask (1), routers (3), DNS servers (6), the domain name (15) and the server identifier
(54).  Other options are skipped.
"""

from __future__ import annotations

import struct
from typing import Any

from .errors import DissectError
from .types import Buffer

MAGIC = b"\x63\x82\x53\x63"
#: option 53 values (RFC 2132 §9.6)
MESSAGE_TYPES = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK",
                 7: "RELEASE", 8: "INFORM"}
BOOTREQUEST = 1
BOOTREPLY = 2
#: DHCPACK (RFC 2132 §9.6): the lease is granted
DHCPACK = 5
#: the fixed BOOTP header (RFC 2131 §2) and the magic cookie: options start here
HEADER_LEN = 240

_HEAD = struct.Struct("!BBBBIHH4s4s4s4s").unpack_from


def parse_dhcp(data: Buffer, off: int, end: int) -> dict[str, Any]:
    """The DHCP message at ``data[off:end]`` (the UDP payload) as a dict: ``op``, ``xid``,
    ``ciaddr``, ``yiaddr`` (4-byte addresses), ``chaddr`` (6 bytes), ``type`` (option 53 or
    None), ``mask``, ``server`` (4 bytes or None), ``routers``, ``dns`` (lists of 4-byte
    addresses), ``domain`` (str or None).  Raises :class:`DissectError` for a message shorter
    than the BOOTP header, a missing magic cookie or an option running past the end."""
    if end > len(data):
        end = len(data)
    if off + HEADER_LEN > end:
        raise DissectError("truncated BOOTP/DHCP message", off)
    op, _htype, _hlen, _hops, xid, _secs, _flags, ciaddr, yiaddr, _siaddr, _giaddr = _HEAD(data, off)
    if bytes(data[off + 236:off + 240]) != MAGIC:
        raise DissectError("DHCP magic cookie missing", off + 236)
    out = {"op": op, "xid": xid, "ciaddr": bytes(ciaddr), "yiaddr": bytes(yiaddr),
           "chaddr": bytes(data[off + 28:off + 34]), "type": None, "mask": None,
           "server": None, "routers": [], "dns": [], "domain": None}
    p = off + HEADER_LEN
    while p < end:
        code = data[p]
        if code == 0:  # pad
            p += 1
            continue
        if code == 255:  # end
            break
        if p + 2 > end or p + 2 + data[p + 1] > end:
            raise DissectError(f"DHCP option {code} runs past the message", p)
        ln = data[p + 1]
        v = bytes(data[p + 2:p + 2 + ln])
        if code == 53 and ln == 1:
            out["type"] = v[0]
        elif code == 1 and ln == 4:
            out["mask"] = v
        elif code == 54 and ln == 4:
            out["server"] = v
        elif code == 3:
            out["routers"] = [v[i:i + 4] for i in range(0, ln - 3, 4)]
        elif code == 6:
            out["dns"] = [v[i:i + 4] for i in range(0, ln - 3, 4)]
        elif code == 15:
            out["domain"] = v.rstrip(b"\0").decode("ascii", "replace")
        p += 2 + ln
    return out
