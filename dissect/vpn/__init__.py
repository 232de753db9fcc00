"""dissect.vpn: stateless wire-format parsers for VPN captures.

Bytes in, small typed records (tuples or slotted classes) out.  Nothing here opens a path,
decompresses, keeps state across packets, or imports pcapvpn.  Every malformed input raises
:class:`dissect.vpn.errors.DissectError` carrying the offset and the reason.
"""
