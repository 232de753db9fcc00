"""IKEv2 MOBIKE (RFC 4555): a client whose address changes keeps its IKE and child SAs.
Registered into :data:`vpnlab.scenarios.SCENARIOS` on import."""

from __future__ import annotations

from .ipsec import pair
from .lab import Ctx
from .net import LEFT_OUT, RIGHT_OUT
from .scenarios import NO_FAILURE, V, fact, ike, notify, scenario

ROAMED = "192.0.2.3"


@scenario(
    name="ikev2_mobike_roam", title="IKEv2 MOBIKE: the initiator's address changes, the SAs "
    "move with it (UPDATE_SA_ADDRESSES), healthy", protocol="ikev2",
    configured="strongSwan 5.9.8 both sides, IKEv2 PSK aes128-sha256-modp2048, `mobike = yes`, "
               f"initiator `local_addrs = %any` with {LEFT_OUT} and {ROAMED} on its link; after "
               f"5 pings {LEFT_OUT} is removed from the initiator's interface.",
    fault="none (the client roams: its first address goes away)",
    shows="IKE_SA_INIT, IKE_AUTH on 4500 with MOBIKE_SUPPORTED both ways (encrypted), 5 pings "
          f"through ESP-in-UDP from {LEFT_OUT}; then INFORMATIONALs from {ROAMED} (liveness "
          "check, UPDATE_SA_ADDRESSES; encrypted) answered by the responder, which then "
          "re-creates the child SA (CREATE_CHILD_SA and a DELETE of the old one: "
          "kernel-libipsec cannot move an SA), and 5 more pings between "
          f"{ROAMED} and the responder on the new SPIs; DELETEs at the end.",
    timeout=60,
    forbidden=[c for c in NO_FAILURE if c != "NAT_DETECTED"] + ["IKE_SA_FLAPPING",
                                                                 "IKE_PEER_RESTART",
                                                                 "ESP_SPI_MISMATCH"],
    facts=[ike(34, 2), ike(37, min=2, extra=f"ip.src == {ROAMED}"),
           notify(35, 16396, keys=True),
           fact("the IKE SA keeps its SPIs across the move", "isakmp", field="isakmp.ispi",
                distinct=1),
           fact(f"ESP from {LEFT_OUT}", f"esp && ip.src == {LEFT_OUT}", min=5),
           fact(f"ESP from {ROAMED}", f"esp && ip.src == {ROAMED}", min=5)],
    verdicts={"main": [V(
        "healthy", None,
        "both charons log the IKE SA and CHILD_SA established; after the address change the "
        "initiator logs the path update ('requesting address change using MOBIKE') and the "
        "responder 'remote host is behind NAT' / the SA's new address; all 10 pings answered",
        tunnel=f"{LEFT_OUT}<->{RIGHT_OUT}")]},
    notes="A tunnel that roams has two address pairs over its life; pcapvpn must keep it one "
          "tunnel (the IKE SPIs and the child SA's SPIs do not change) and not read the first "
          "address's silence as a failure.",
)
def ikev2_mobike_roam(ctx: Ctx) -> None:
    lc, rc = pair(LEFT_OUT, conn_extra={"mobike": "yes"})
    lc["connections"]["lab"]["local_addrs"] = "%any"
    # the second address survives the first's removal only with promote_secondaries
    ctx.topo.sh(ctx.topo.left, "sysctl", "-qw", "net.ipv4.conf.l-eth0.promote_secondaries=1")
    ctx.topo.sh(ctx.topo.left, "ip", "addr", "add", f"{ROAMED}/24", "dev", "l-eth0")
    ctx.strongswan(({}, lc), ({}, rc))
    ctx.start_capture()
    ctx.left.initiate()
    ctx.ping(5, check=True)
    ctx.topo.sh(ctx.topo.left, "ip", "addr", "del", f"{LEFT_OUT}/24", "dev", "l-eth0")
    ctx.topo.sh(ctx.topo.left, "ip", "route", "replace", "default", "via", "192.0.2.1")
    ctx.sleep(3)
    ctx.ping(5, check=True)
