"""Numbers and helpers the inner modules share: protocol numbers, ports and ICMP types bound once
from the :mod:`dissect.vpn.ip` enums (per-packet code compares plain ints), header sizes."""

from __future__ import annotations

import ipaddress

from dissect.vpn import ip as _ip

_decode_ipv4 = _ip.decode_ipv4
# protocol numbers bound once (dissect.vpn.ip names them)
_ICMP, _IPIP, _TCP, _UDP = int(_ip.IpProto.ICMP), int(_ip.IpProto.IPIP), int(_ip.IpProto.TCP), \
    int(_ip.IpProto.UDP)
_IPV6, _ESP, _ICMPV6 = int(_ip.IpProto.IPV6), int(_ip.IpProto.ESP), int(_ip.IpProto.ICMPV6)
_DNS_PORT, _L2TP_PORT = int(_ip.Port.DNS), int(_ip.Port.L2TP)
_DHCP_PORTS = ((int(_ip.Port.DHCP_SERVER), int(_ip.Port.DHCP_CLIENT)),
               (int(_ip.Port.DHCP_CLIENT), int(_ip.Port.DHCP_SERVER)))
#: header sizes: UDP (RFC 768), ICMP (RFC 792: type, code, checksum, identifier, sequence), ESP's
#: SPI and sequence number (RFC 4303), the DNS header (RFC 1035 §4.1.1), the two ports
_UDP_HEADER = _ICMP_HEADER = _ESP_HEADER = 8
_DNS_HEADER = 12
_PORTS_LEN = 4
#: ESP inside ESP opened this many levels deep at most
MAX_NESTED = 2
#: ICMP / ICMPv6 echo request and reply types
_ECHO4 = (int(_ip.Icmp4Type.ECHO_REQUEST), int(_ip.Icmp4Type.ECHO_REPLY))
_ECHO6 = (int(_ip.Icmp6Type.ECHO_REQUEST), int(_ip.Icmp6Type.ECHO_REPLY))



def _txt(a: bytes) -> str:
    return str(ipaddress.ip_address(a))
