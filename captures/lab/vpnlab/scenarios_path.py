"""Several vantage points of the same traffic (issue 16): captures taken at the same time at both
gateways' outside interfaces and at the router's inside (m-l) and outside (m-r), with a loss
injected in the router (between m-l and m-r: the router's forward chain), so that pcapvpn
analysing the four files together (``--vantage``) must place every loss between router-in and
router-out.  Registered into :data:`vpnlab.scenarios.SCENARIOS` on import.

Expected ``vantage`` facts (expected.json), decided by where the scenario's nftables rule sits:
``losses`` (kind, direction from the initiator's side ``a_to_b`` or back, from, to),
``locations`` (finding code of the report -> from / to; the report is of ``analyse_from``, or of
the first point), ``nat_between`` (the points the NAT lies between) and ``verdict`` (the
tunnel's verdict analysing the points together, the report of ``analyse_from`` or of the first
point; ``primary``: the codes naming the cause)."""

from __future__ import annotations

from .lab import Ctx
from .scenarios import (NO_FAILURE, F, L, R, V, esp_decrypts, esp_dir, fact, ike,
                        ike_decrypts, pairc, scenario, std, without, _big_cert_pair)

#: the four points, in path order from the initiator (left)
POINTS = (("gw-left", "l-eth0", "left"), ("router-in", "m-l", "mid"),
          ("router-out", "m-r", "mid"), ("gw-right", "r-eth0", "right"))
#: an IKE message on UDP 4500 (non-ESP marker: the first 4 payload bytes are zero)
IKE4500 = "udp dport 4500 @th,64,32 0"
IKE4500_FROM = "udp sport 4500 @th,64,32 0"


@scenario(
    name="ikev2_path_esp_loss", title="IKEv2, 10 % of the initiator's ESP lost in the router, "
    "captured at four points (both gateways, router inside and outside)",
    protocol="ikev2", points=POINTS,
    configured="IKE aes128-sha256-ecp256, ESP aes128-sha256; 300 pings 0.2 s apart (~60 s); "
               "simultaneous captures at l-eth0 (gw-left), m-l (router-in), m-r (router-out, "
               "main) and r-eth0 (gw-right).",
    fault="the router's forward chain drops 10 % of the initiator's ESP: `ip saddr 192.0.2.2 "
          "udp dport 4500 @th,64,32 != 0 numgen random mod 100 < 10 drop` (seen at gw-left "
          "and router-in, never at router-out and gw-right)",
    shows="IKE_SA_INIT, IKE_AUTH, ~270 of 300 ESP packets from the initiator past the router "
          "(all 300 before it), the responder's replies to those that arrived, DELETEs; the "
          "same packets at the four points.",
    timeout=120,
    keyless=[F("ESP_SEQUENCE_GAP")],
    forbidden=without(NO_FAILURE),
    verdicts={"main": [V(
        "degraded", "ESP_SEQUENCE_GAP",
        "the router dropped 10 % of the initiator's ESP (sequence gaps, lost pings) while the "
        "tunnel kept working both ways")]},
    vantage={"losses": [{"kind": "esp", "direction": "a_to_b", "from": "router-in",
                         "to": "router-out"}],
             "no_losses_elsewhere": True,
             "locations": {"ESP_SEQUENCE_GAP": {"from": "router-in", "to": "router-out"}},
             "analyse_from": "router-out",
             "verdict": {"tunnel": "192.0.2.2<->198.51.100.2", "verdict": "degraded",
                         "primary": ["PATH_LOSS", "ESP_SEQUENCE_GAP"],
                         "why": "10 % of the initiator's ESP dropped in the router"}},
    facts=[ike(34, 2), ike(35, 2), *esp_dir(L, R, 250), *esp_dir(R, L, 250),
           fact("fewer than 300 initiator ESP packets past the router", f"esp && ip.src == {L}",
                max=299), esp_decrypts()],
)
def ikev2_path_esp_loss(ctx: Ctx) -> None:
    lc, rc = pairc(ctx, proposals="aes128-sha256-ecp256")
    std(ctx, lc, rc)
    ctx.start_capture()
    ctx.left.initiate()
    ctx.topo.rule(f"ip saddr {L} udp dport 4500 @th,64,32 != 0 numgen random mod 100 < 10 drop")
    ctx.ping(300, interval=0.2)


@scenario(
    name="ikev2_path_esp_oneway", title="IKEv2, all of the responder's ESP lost in the router, "
    "captured at four points",
    protocol="ikev2", points=POINTS, capture="m-l",
    configured="IKE aes128-sha256-ecp256, ESP aes128-sha256; 40 pings 0.4 s apart; captures at "
               "l-eth0, m-l (main), m-r and r-eth0.",
    fault="after IKE_AUTH the router's forward chain drops every ESP packet from the "
          "responder: `ip saddr 198.51.100.2 udp sport 4500 @th,64,32 != 0 drop` (seen at "
          "gw-right and router-out, never at router-in and gw-left)",
    shows="IKE_SA_INIT, IKE_AUTH, the initiator's ESP at every point; the responder's ESP "
          "replies at gw-right and router-out only.",
    timeout=90,
    keyless=[F("ESP_ONE_WAY")],
    forbidden=without(NO_FAILURE, "ESP_ONE_WAY"),
    verdicts={"main": [V(
        "failing", "ESP_ONE_WAY",
        "the tunnel is up but the router drops the responder's ESP: every ping from the "
        "initiator goes unanswered until the end", stage="dataplane")]},
    vantage={"losses": [{"kind": "esp", "direction": "b_to_a", "from": "router-out",
                         "to": "router-in"}],
             "no_losses_elsewhere": True,
             "locations": {"ESP_ONE_WAY": {"from": "router-out", "to": "router-in"}},
             "verdict": {"tunnel": "192.0.2.2<->198.51.100.2", "verdict": "failing",
                         "primary": ["ESP_ONE_WAY"],
                         "why": "the responder's ESP never gets past the router"}},
    facts=[ike(34, 2), ike(35, 2), *esp_dir(L, R, 30),
           fact("no ESP from the responder at router-in", f"esp && ip.src == {R}", count=0)],
)
def ikev2_path_esp_oneway(ctx: Ctx) -> None:
    lc, rc = pairc(ctx, proposals="aes128-sha256-ecp256")
    std(ctx, lc, rc)
    ctx.start_capture()
    ctx.left.initiate()
    ctx.topo.rule(f"ip saddr {R} udp sport 4500 @th,64,32 != 0 drop")
    ctx.ping(40, interval=0.4)


@scenario(
    name="ikev2_path_ike_response_lost", title="IKEv2, the first IKE_AUTH response lost in the "
    "router (retransmission answered), captured at four points",
    protocol="ikev2", points=POINTS, capture="m-l",
    configured="IKE aes128-sha256-ecp256, ESP aes128-sha256; strongSwan retransmits after 4 s; "
               "captures at l-eth0, m-l (main), m-r and r-eth0.",
    fault="the router's forward chain drops the first IKE message on UDP 4500 from the "
          "responder, once: `ip saddr 198.51.100.2 udp sport 4500 @th,64,32 0 quota until 400 "
          "bytes drop` (the IKE_AUTH response: seen at gw-right and router-out, not at "
          "router-in and gw-left)",
    shows="IKE_SA_INIT; IKE_AUTH request, its response lost in the router, the request "
          "retransmitted after ~4 s and the responder's re-sent response getting through; "
          "ESP both ways.",
    timeout=90,
    keyless=[F("IKE_RETRANSMISSION")],
    forbidden=without(NO_FAILURE),
    verdicts={"main": [V(
        "degraded", "IKE_RETRANSMISSION",
        "the initiator logs 'retransmit 1 of request with message ID 1'; the re-sent IKE_AUTH "
        "response arrived and the tunnel came up")]},
    vantage={"losses": [{"kind": "ike", "direction": "b_to_a", "from": "router-out",
                         "to": "router-in", "exchange": 35}],
             "no_losses_elsewhere": True,
             "locations": {"IKE_RETRANSMISSION": {"from": "router-out", "to": "router-in"}},
             "verdict": {"tunnel": "192.0.2.2<->198.51.100.2", "verdict": "degraded",
                         "primary": ["PATH_LOSS", "IKE_RETRANSMISSION"],
                         "why": "one IKE_AUTH response lost in the router"}},
    facts=[ike(34, 2), ike(35, resp=False, min=2), ike(35, resp=True, count=1),
           *esp_dir(L, R, 3), *esp_dir(R, L, 3)],
)
def ikev2_path_ike_response_lost(ctx: Ctx) -> None:
    lc, rc = pairc(ctx, proposals="aes128-sha256-ecp256")
    std(ctx, lc, rc)
    # nftables counts the packet before it compares (nft_quota): the first response (~260 B
    # of IP) is under 400 bytes and dropped, the re-sent one brings the total over: it passes
    ctx.topo.rule(f"ip saddr {R} {IKE4500_FROM} quota until 400 bytes drop")
    ctx.start_capture()
    ctx.left.initiate(timeout=30)
    ctx.ping(5, check=True)


@scenario(
    name="ikev2_path_ikefrag_loss", title="IKEv2 fragmentation (RFC 7383), one fragment of the "
    "IKE_AUTH request lost in the router, captured at four points",
    protocol="ikev2", points=POINTS, capture="m-l",
    configured="RSA-4096 certificate auth, `fragmentation = yes`, `fragment_size = 1000`, IKE "
               "aes128-sha256-ecp256, ESP aes128-sha256; captures at l-eth0, m-l (main), m-r "
               "and r-eth0.",
    fault="the router's forward chain drops fragment 2 of the initiator's first fragmented "
          "message, once: `ip saddr 192.0.2.2 udp dport 4500 @th,64,32 0 @th,224,8 53 "
          "@th,352,16 2 quota until 1500 bytes drop` (SKF payload, fragment number 2)",
    shows="IKE_SA_INIT; the IKE_AUTH request in SKF fragments, fragment 2 missing past the "
          "router; after ~4 s all fragments re-sent and answered; ESP both ways.",
    timeout=90,
    keyless=[],
    forbidden=without(NO_FAILURE),
    verdicts={"main": [V(
        "degraded", "IKE_RETRANSMISSION",
        "the initiator retransmits the fragmented IKE_AUTH request once (the responder never "
        "got fragment 2 the first time); then the tunnel comes up")]},
    vantage={"losses": [{"kind": "ike", "direction": "a_to_b", "from": "router-in",
                         "to": "router-out", "exchange": 35}],
             "no_losses_elsewhere": True,
             "locations": {"IKE_RETRANSMISSION": {"from": "router-in", "to": "router-out"}},
             "verdict": {"tunnel": "192.0.2.2<->198.51.100.2", "verdict": "degraded",
                         "primary": ["PATH_LOSS", "IKE_RETRANSMISSION"],
                         "why": "one IKE fragment lost in the router, the request re-sent"}},
    facts=[ike(34, 2), fact("IKE_AUTH in SKF fragments", "isakmp.frag.total", min=4),
           *esp_dir(L, R, 3), *esp_dir(R, L, 3), ike_decrypts()],
)
def ikev2_path_ikefrag_loss(ctx: Ctx) -> None:
    lc, rc, lf, rf = _big_cert_pair(ctx, proposals="aes128-sha256-ecp256",
                                    conn_extra={"fragmentation": "yes"})
    frag = {"charon": {"fragment_size": 1000}}
    std(ctx, lc, rc, ls=frag, rs=frag, lfiles=lf, rfiles=rf)
    # the first fragment 2 (~1 KB of IP) is under the quota and dropped; its retransmission
    # brings the total over 1500 bytes and passes
    ctx.topo.rule(f"ip saddr {L} {IKE4500} @th,224,8 53 @th,352,16 2 quota until 1500 bytes "
                  f"drop")
    ctx.start_capture()
    ctx.left.initiate()
    ctx.ping(3, check=True)


@scenario(
    name="ikev2_path_nat", title="IKEv2 through a port-remapping NAT, captured at four points "
    "(inside and outside the NAT)",
    protocol="ikev2", points=POINTS, nat=True,
    configured="Initiator 10.99.0.2 behind the router's masquerade (UDP 500/4500 remapped to "
               "random ports 40000-49999); IKE aes128-sha256-ecp256, ESP aes128-sha256; 20 "
               "pings; captures at l-eth0, m-l (inside), m-r (outside, main) and r-eth0.",
    fault="none (real NAT between router-in and router-out)",
    shows="The same IKE messages and ESP packets with the initiator's inside tuple "
          "10.99.0.2:500/4500 at gw-left and router-in and the NAT's outside tuple "
          "198.51.100.1:4xxxx at router-out and gw-right.",
    timeout=90,
    keyless=[F("NAT_DETECTED", "inferred")],
    forbidden=without(NO_FAILURE, "NAT_DETECTED"),
    verdicts={"main": [V(
        "healthy", None,
        "the tunnel came up through the NAT (both charons log it established) and all pings "
        "were answered", tunnel="198.51.100.1<->198.51.100.2")]},
    vantage={"losses": [], "no_losses_elsewhere": True,
             "nat_between": {"from": "router-in", "to": "router-out"},
             "verdict": {"tunnel": "10.99.0.2<->198.51.100.2", "verdict": "healthy",
                         "primary": [None], "why": "no loss anywhere; the NAT translates"}},
    facts=[ike(34, 2), *esp_dir("198.51.100.1", R, 15), *esp_dir(R, "198.51.100.1", 15)],
)
def ikev2_path_nat(ctx: Ctx) -> None:
    lc, rc = pairc(ctx, proposals="aes128-sha256-ecp256")
    std(ctx, lc, rc)
    ctx.start_capture()
    ctx.left.initiate()
    ctx.ping(20, interval=0.2, check=True)


@scenario(
    name="ikev2_path_nat_remap", title="IKEv2 through a NAT whose mapping changes (conntrack "
    "entries time out while the tunnel is idle), captured at four points",
    protocol="ikev2", points=POINTS, nat=True, timeout=120,
    configured="Initiator 10.99.0.2 behind the router's masquerade (random ports "
               "40000-49999); IKE aes128-sha256-ecp256, ESP aes128-sha256; no NAT keepalives "
               "(`keep_alive = 0`), initiator DPD every 3 s; the router's UDP conntrack "
               "timeouts set to 1 s after the first pings; 5 pings, 6 s idle, 15 pings; "
               "captures at l-eth0, m-l (inside), m-r (outside, main) and r-eth0.",
    fault="the NAT forgets the mapping while the tunnel is idle (net.netfilter."
          "nf_conntrack_udp_timeout[_stream] = 1 in the router): the initiator's next packets "
          "leave the NAT from a new random port",
    shows="The same IKE and ESP packets with the inside tuple 10.99.0.2:4500 at gw-left and "
          "router-in throughout, and at router-out and gw-right with one outside port before "
          "the idle period and another after it.",
    keyless=[F("NAT_DETECTED", "inferred")],
    forbidden=["DECODE_ERRORS", "CAPTURE_TRUNCATED", "IKE_NO_PROPOSAL_CHOSEN",
               "IKE_AUTH_FAILED"],
    verdicts={"main": [V(
        "degraded", "NAT_MAPPING_CHANGED",
        "the NAT's mapping of the initiator changed after the idle period (new outside port "
        "at router-out); the responder followed it and the tunnel kept working",
        tunnel="198.51.100.1<->198.51.100.2")]},
    vantage={"losses": [], "no_losses_elsewhere": False,
             "nat_between": {"from": "router-in", "to": "router-out"},
             "locations": {"NAT_MAPPING_CHANGED": {"from": "router-in", "to": "router-out"}},
             "analyse_from": "router-out",
             "verdict": {"tunnel": "198.51.100.1<->198.51.100.2", "verdict": "degraded",
                         "primary": ["NAT_MAPPING_CHANGED"],
                         "why": "the responder logs 'remote endpoint changed' to the NAT's new "
                                "port after the idle period and rekeys the child SA"}},
    facts=[ike(34, 2), fact("two outside ports of the initiator on 4500",
                            "udp.dstport == 4500 && ip.src == 198.51.100.1",
                            field="udp.srcport", distinct=2)],
)
def ikev2_path_nat_remap(ctx: Ctx) -> None:
    lc, rc = pairc(ctx, proposals="aes128-sha256-ecp256",
                   left={"conn_extra": {"dpd_delay": "3s"}})
    std(ctx, lc, rc, ls={"charon": {"keep_alive": "0"}})
    ctx.start_capture()
    ctx.left.initiate()
    ctx.ping(5, interval=0.2, check=True)
    ctx.topo.sh(ctx.topo.mid, "sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout=1",
                "net.netfilter.nf_conntrack_udp_timeout_stream=1")
    ctx.note("router: UDP conntrack timeouts 1 s")
    ctx.sleep(6)
    ctx.ping(15, interval=0.5)
