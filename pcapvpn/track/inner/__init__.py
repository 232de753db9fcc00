"""What the traffic inside tunnels shows (the ``routing`` and ``inner`` stages, issue 15).

One inner model, whatever the view:

* :mod:`.decrypted`: ESP decryption per keyed SA (``--keys``): :class:`InnerTracker` opens the
  packets, :class:`EspCrypto` keeps per-SA results, and every opened packet goes to the
  plaintext tracker as a view of kind ``keys``;
* :mod:`.plain`: :class:`PlainTracker` turns the decoder's ``plain`` / ``plain_tcp`` /
  ``link_other`` events into views (interfaces of capture files), flows, DNS queries, DHCP leases
  and ARP requests;
* :mod:`.model`: :func:`pair` and :func:`tie` tie the views to tunnels (``tied_by``), and
  :class:`InnerModel` is what the rules and the report read; :func:`seen_at` matches a
  conversation at other vantage points;
* :mod:`.consts`: protocol numbers bound once, header sizes.
"""

from pcapvpn.track.inner.consts import _txt
from pcapvpn.track.inner.decrypted import (
    ANSWER_TIMEOUT, MAX_EVIDENCE, MAX_FLOWS, MAX_PENDING, EspCrypto, InnerTracker,
    tunnel_inner_summary,
)
from pcapvpn.track.inner.model import (
    ESP_SUITES, PAIR_MIN, VPN_OVERHEAD, InnerModel, Seen, _assigned, _pairs, esp_fits,
    model_dict, ordinary, pair, seen_at, tie, watches,
)
from pcapvpn.track.inner.plain import (
    MAX_ARP, MAX_DNS, MAX_OUTSTANDING, MAX_PLAIN_FLOWS, MAX_REFS, MAX_VIEWS, PAIR_FRAMES,
    PAIR_SAMPLE, PAIR_WINDOW, TIED_BY, VIEW_KINDS, DnsQuery, Flow, PlainTracker, View,
    _tunnel_name,
)

__all__ = [
    "ANSWER_TIMEOUT", "ESP_SUITES", "MAX_ARP", "MAX_DNS", "MAX_EVIDENCE", "MAX_FLOWS",
    "MAX_OUTSTANDING", "MAX_PENDING", "MAX_PLAIN_FLOWS", "MAX_REFS", "MAX_VIEWS", "PAIR_FRAMES",
    "PAIR_MIN", "PAIR_SAMPLE", "PAIR_WINDOW", "TIED_BY", "VIEW_KINDS", "VPN_OVERHEAD",
    "DnsQuery", "EspCrypto", "Flow", "InnerModel", "InnerTracker", "PlainTracker", "Seen", "View",
    "_assigned", "_pairs", "_tunnel_name", "_txt", "esp_fits", "model_dict", "ordinary", "pair",
    "seen_at", "tie", "tunnel_inner_summary", "watches",
]
