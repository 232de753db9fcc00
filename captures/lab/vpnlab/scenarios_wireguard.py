"""WireGuard (wireguard-go) scenarios: a healthy tunnel, a responder that does not know the
client's public key, and the office LAN behind the WireGuard server without a route back
(issue 15: the inside view through ``wg0``).

Each records the router's outer capture (the main one) and the client's ``tcpdump -i any``
(Linux cooked v2: ``l-eth0`` with the WireGuard UDP, ``wg0`` with the plaintext); the LAN
scenario also records the server's ``tcpdump -i any`` (``r-eth0``, ``wg1`` and the LAN side
``r-lan``).  Registered into :data:`vpnlab.scenarios.SCENARIOS` on import.
"""

from __future__ import annotations

from . import wireguard as wg
from .lab import Ctx
from .scenarios import F, V, scenario
from .scenarios_inner import LAN_HOST, LAN_NET, dns, http, lan_up

WG_TUNNEL = f"192.0.2.2<->198.51.100.2:{wg.PORT}/udp"
WG_CONF = ("wireguard-go 0.0.20220316 on both ends (userspace, TUN), UDP 51820, client wg0 "
           "10.9.0.2/24, server wg1 10.9.0.1/24, Curve25519 keys from `wg genkey`")
CLIENT_ANY = {"interface": "client-any",
              "view": "client `tcpdump -i any` (Linux cooked v2: l-eth0 + wg0)"}


def _views(ctx: Ctx, *which: str) -> None:
    """``tcpdump -i any`` on the client ("client-any") and/or the server ("gw-any"), then the
    router's main capture."""
    topo = ctx.topo
    for label in which:
        ns = topo.left if label == "client-any" else topo.right
        p = ctx.work / f"{ctx.sc.name}-{label}.pcap"
        ctx.captures.append((label, topo.capture("any", p, ns, buffer_kib=32768), p))
    ctx.start_capture()


def _up(ctx: Ctx, *, server_knows_client: bool = True, client_routes: tuple[str, ...] = (),
        allowed: str = f"{wg.SERVER_TUN}/32") -> None:
    cpriv, cpub = wg.keypair()
    spriv, spub = wg.keypair()
    known = cpub
    if not server_knows_client:
        _other, known = wg.keypair()  # the server's [Peer] holds another client's key
        ctx.note("server [Peer] PublicKey is not the client's")
    wg.start(ctx, "right", wg.server_conf(spriv, known), f"{wg.SERVER_TUN}/24")
    wg.start(ctx, "left", wg.client_conf(cpriv, spub, allowed), f"{wg.CLIENT_TUN}/24",
             routes=client_routes)


def _end(ctx: Ctx) -> None:
    wg.save_status(ctx)


@scenario(
    name="wireguard_healthy", title="WireGuard (wireguard-go), healthy", protocol="wireguard",
    configured=WG_CONF + "; AllowedIPs 10.9.0.1/32 on the client, 10.9.0.2/32 on the server.",
    fault="none",
    shows="One handshake initiation and its response, transport data both ways (10 pings to "
          "10.9.0.1 through wg0).",
    timeout=60, fast=True, implementations=("wireguard-go",),
    views=[{"file": "wireguard_healthy-client-any.pcap", **CLIENT_ANY}],
    keyless=[],
    forbidden=["WIREGUARD_NO_RESPONSE", "VPN_DATA_ONE_WAY", "VPN_NO_DATA", "DECODE_ERRORS",
               "INNER_NO_RETURN", "ROUTE_OUTSIDE_TUNNEL"],
    verdicts={"all": [V("healthy", None, "`wg show` on both ends shows a latest handshake and "
                        "all 10 pings to 10.9.0.1 were answered through wg0",
                        tunnel=WG_TUNNEL)]},
)
def wireguard_healthy(ctx: Ctx) -> None:
    _views(ctx, "client-any")
    _up(ctx)
    ctx.ping(10, interval=0.2, src=None, dst=wg.SERVER_TUN, check=True)
    _end(ctx)


@scenario(
    name="wireguard_unknown_peer", title="WireGuard: the server does not know the client's "
    "public key (initiations dropped silently)", protocol="wireguard",
    configured=WG_CONF + "; the server's [Peer] PublicKey is another key, not the client's.",
    fault="wrong client public key on the server",
    shows="Handshake initiations from the client every 5 s (REKEY_TIMEOUT plus jitter), no "
          "response, no transport data; the pings to 10.9.0.1 are never answered.",
    timeout=90, implementations=("wireguard-go",),
    views=[{"file": "wireguard_unknown_peer-client-any.pcap", **CLIENT_ANY}],
    keyless=[F("WIREGUARD_NO_RESPONSE"),
             F("WIREGUARD_NO_RESPONSE", capture="wireguard_unknown_peer-client-any.pcap")],
    forbidden=["VPN_DATA_ONE_WAY", "DECODE_ERRORS", "WIREGUARD_COOKIE"],
    verdicts={"all": [V("failing", "WIREGUARD_NO_RESPONSE",
                        "the server's log shows the initiations but no peer for them ('wg "
                        "show' on the server: no latest handshake); every handshake is "
                        "dropped silently", tunnel=WG_TUNNEL, stage="reachability")]},
    notes="WireGuard never answers an initiation it cannot authenticate: from the wire this "
          "looks exactly like a blocked port (the finding's advice names both).",
)
def wireguard_unknown_peer(ctx: Ctx) -> None:
    _views(ctx, "client-any")
    _up(ctx, server_knows_client=False)
    ctx.ping(18, interval=1, src=None, dst=wg.SERVER_TUN)
    ctx.sleep(2)
    _end(ctx)


@scenario(
    name="inner_wireguard_no_return", title="WireGuard: the route to the office LAN goes "
    "through wg0 but the internal host has no route back to the tunnel addresses",
    protocol="wireguard",
    configured=WG_CONF + f"; client AllowedIPs 10.9.0.1/32 + {LAN_NET} with a route to "
               f"{LAN_NET} via wg0; the server forwards to the office LAN {LAN_NET} "
               f"(internal host {LAN_HOST} with web + dnsmasq, no default route).",
    fault="the internal host has no route back to 10.9.0.0/24",
    shows="Pings to the server's tunnel address 10.9.0.1 are answered; pings, a DNS query and "
          "an HTTP connection from 10.9.0.2 to 10.20.5.10 go into wg0, are forwarded to the "
          "LAN by the server, and are never answered.",
    timeout=90, implementations=("wireguard-go",),
    views=[{"file": "inner_wireguard_no_return-client-any.pcap", **CLIENT_ANY},
           {"file": "inner_wireguard_no_return-gw-any.pcap", "interface": "gw-any",
            "view": "server `tcpdump -i any` (r-eth0 + wg1 + the LAN side r-lan)"}],
    keyless=[F("INNER_NO_RETURN", capture="inner_wireguard_no_return-client-any.pcap"),
             F("INNER_NO_RETURN", capture="inner_wireguard_no_return-gw-any.pcap")],
    forbidden=["ROUTE_OUTSIDE_TUNNEL", "INNER_BLOCKED", "SUBNET_OVERLAP", "INNER_MTU",
               "WIREGUARD_NO_RESPONSE", "VPN_DATA_ONE_WAY"],
    verdicts={"all": [V("failing", "INNER_NO_RETURN",
                        "the internal host has no route back to the tunnel addresses: requests "
                        "through wg0 reach the LAN and nothing returns", tunnel=WG_TUNNEL,
                        stage="routing")],
              "main": [V("healthy", None, "the outer view shows the handshake and transport "
                         "data both ways (the pings to 10.9.0.1 are answered); WireGuard "
                         "cannot be decrypted", tunnel=WG_TUNNEL)]},
)
def inner_wireguard_no_return(ctx: Ctx) -> None:
    lan_up(ctx, return_route=False)
    _views(ctx, "client-any", "gw-any")
    # the server's AllowedIPs for the client is its tunnel address; the client sends the
    # office LAN into wg0 (AllowedIPs and a route)
    _up(ctx, client_routes=(LAN_NET,), allowed=f"{wg.SERVER_TUN}/32, {LAN_NET}")
    ctx.ping(3, interval=0.2, src=None, dst=wg.SERVER_TUN, check=True)
    ctx.ping(4, interval=0.3, src=None, dst=LAN_HOST)
    dns(ctx, tries=2)
    http(ctx, "/index.html", wait=5)
    ctx.sleep(7)
    ctx.ping(1, src=None, dst=wg.SERVER_TUN)
    _end(ctx)
