"""NAT traversal (stage ``nat_traversal``): where the NATs are, whether NAT-T is used across them,
whether the NAT mappings are kept alive, and whether they changed during an SA.

The facts come from :mod:`pcapvpn.track.nat` (``sa.nat``: the NAT-D hashes recomputed against the
addresses seen at the capture point, the 500→4500 move, source changes of IKE messages), the ESP
SAs (``encap``, their source changes ``moves``, time bins) and the NAT keepalive flows.  No bytes
are parsed here.

Protocol background: RFC 7296 §2.23 (IKEv2 NAT traversal: once a NAT is detected "all future IKE
and ESP packets" go over UDP 4500), RFC 3947 (IKEv1 NAT-D, the move to 4500), RFC 3948 (UDP
encapsulation of ESP, NAT keepalives sent by the peer behind the NAT, §4), RFC 3715 §2.1 (AH cannot
cross a NAT; ESP without UDP cannot cross a NAPT).  A faked NAT-D that only forces UDP
encapsulation (strongSwan encap = yes, kernel-libipsec) is not a NAT: it is reported as
``NAT_ENCAPSULATION_FORCED``, never as ``NAT_DETECTED``.  ``NAT_T_BLOCKED`` (4500 never
answered) is a reachability rule (it competes with IKE_NO_RESPONSE).

One room per question: :mod:`.detection` (NAT_DETECTED, NAT_ENCAPSULATION_FORCED),
:mod:`.not_used` (NAT_T_NOT_USED), :mod:`.keepalive` (NAT_KEEPALIVE_MISSING), :mod:`.mapping`
(NAT_MAPPING_CHANGED); :mod:`.common` holds the NAT verdicts per tunnel and the small helpers they
share, :mod:`.timeline` the tunnel's activity and source changes that the last two read.
Importing the package registers the rules, in this order.
"""

from __future__ import annotations

from pcapvpn.rules.nat import (  # noqa: F401 - registers the rules
    detection, not_used, keepalive, mapping,
)
