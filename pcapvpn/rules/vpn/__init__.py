"""Rules for the VPNs beside IPsec: OpenVPN, WireGuard, L2TP, PPTP and SSL-VPN (TLS/DTLS).

The stages are IPsec's: reachability (does anything come back from the server: TCP SYN-ACK,
a hard reset, a handshake response, SCCRP), negotiation (L2TP/PPTP control connections), the
authentication step (the TLS handshake of OpenVPN and SSL-VPN, WireGuard's Noise handshake), the
data plane (data both ways).  A tunnel is a client and a server:port (:mod:`pcapvpn.track.vpn`).

Findings about something missing need the capture to have run ``response_timeout`` seconds past
the last request or retransmissions to have been seen; otherwise the tunnel's verdict is
``unknown`` with the reason in ``not_seen``.  A healthy session yields nothing at warning or
above.  Rules never parse bytes.

The rules are split by protocol: :mod:`.openvpn`, :mod:`.tls`, :mod:`.wireguard`,
:mod:`.l2tp_pptp`, :mod:`.flows` (data one way, TCP without an answer), :mod:`.no_data`,
:mod:`.icmp`; :mod:`.verdicts` gives the evidence for these tunnels' verdicts; :mod:`.common` holds what they
share.  Importing the package registers the rules, in this order.
"""

from __future__ import annotations

from pcapvpn.rules.vpn import openvpn, tls, wireguard, flows, l2tp_pptp, no_data, icmp  # noqa: F401
from pcapvpn.rules.vpn.verdicts import vpn_evidence

__all__ = ["vpn_evidence"]
