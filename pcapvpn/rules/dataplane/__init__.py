"""Dataplane: does ESP flow both ways, in order, on the agreed SPIs?

The facts come from :mod:`pcapvpn.track.esp` (per-SA sequence analysis with a real anti-replay
window, sizes, time bins, fragments) and from the tunnels (:mod:`pcapvpn.track.tunnels`: the two
SAs of a child SA paired).  No bytes are parsed here.

Protocol background: RFC 4303 §2.2 (the first packet of an SA carries sequence number 1; the
counter never cycles without ESN), §3.4.3 (the receiver's anti-replay window: 32 packets minimum,
64 the default; packets below the window or seen before are dropped), §2.2.1 (ESN);
RFC 4302 (AH: the same sequence rules); RFC 1191 / RFC 8201 (path MTU discovery with ICMP
"fragmentation needed" / ICMPv6 "packet too big"); RFC 4459 (MTU and fragmentation issues with
tunnels).

What a capture can and cannot say: a packet missing at the capture point was lost between the
sender and the capture point, or by the capture itself; loss after the capture point is
invisible.  Absence (one-way, no traffic) needs time: nothing is said when the capture ends less
than ``one_way_window`` after the flowing side started.

One room per question: :mod:`.one_way`, :mod:`.sequence`, :mod:`.no_traffic`, :mod:`.mtu`,
:mod:`.fragments`, :mod:`.mid_session`; :mod:`.common` holds the SA pairing and the indexes they
share.  Importing the package registers the rules, in this order.
"""

from __future__ import annotations

from pcapvpn.rules.dataplane import (  # noqa: F401 - registers the rules
    one_way, sequence, no_traffic, mtu, fragments, mid_session,
)
from pcapvpn.rules.dataplane.common import sa_filter

__all__ = ["sa_filter"]
