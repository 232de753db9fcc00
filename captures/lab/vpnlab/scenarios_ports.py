"""IKE and ESP-in-UDP on ports other than 500/4500 (strongSwan ``charon.port`` /
``charon.port_nat_t``; libreswan ``ikeport=``; FortiGate ``ike-port``): Wireshark and the
port-keyed dissectors see plain UDP. Registered into :data:`vpnlab.scenarios.SCENARIOS` on
import."""

from __future__ import annotations

from .lab import Ctx
from .scenarios import F, L, NATR, NO_FAILURE, R, V, esp_decrypts, esp_dir, fact, ike, ike_decrypts, \
    pairc, scenario, std

IKE_PORT, NATT_PORT = 2400, 2500
_PORTS = {"charon": {"port": IKE_PORT, "port_nat_t": NATT_PORT}}


@scenario(
    name="ikev2_custom_ports", title="IKEv2 on UDP 2400, ESP-in-UDP on 2500 (custom ports), "
                                     "healthy", protocol="ikev2",
    configured=f"strongSwan 5.9.8 both sides with `charon.port = {IKE_PORT}` and "
               f"`charon.port_nat_t = {NATT_PORT}`, the initiator's connection "
               f"`remote_port = {IKE_PORT}`; IKE aes128-sha256-modp2048, ESP aes128-sha256, "
               "PSK, no NAT (kernel-libipsec forces UDP encapsulation).",
    fault="none (ports changed on both gateways, e.g. where an ISP filters UDP 500/4500)",
    shows=f"IKE_SA_INIT between UDP {IKE_PORT} and {IKE_PORT}; then the initiator moves its "
          f"own port to {NATT_PORT} while the responder stays on {IKE_PORT} (charon floats a "
          f"remote port only from 500 to 4500): IKE_AUTH and 5 pings through ESP-in-UDP "
          f"between {NATT_PORT} and {IKE_PORT}, both ways; DELETEs. charon puts the non-ESP "
          f"marker before every IKE message sent from a port other than 500, IKE_SA_INIT "
          f"included, so Wireshark shows it all with one Decode As: "
          f"`udp.port=={IKE_PORT},udpencap`.",
    timeout=60,
    decode_as=[f"udp.port=={IKE_PORT},udpencap"],
    forbidden=NO_FAILURE + ["NAT_MAPPING_CHANGED"],
    keyless=[F("NAT_ENCAPSULATION_FORCED", "inferred")],
    verdicts={"main": [V(
        "healthy", None,
        "both charons log the IKE SA and CHILD_SA established on the configured ports and all "
        "5 pings were answered through ESP both ways")]},
    facts=[ike(34, 2, extra=f"udp.srcport == {IKE_PORT} && udp.dstport == {IKE_PORT}"),
           ike(35, 2, extra=f"udp.port == {NATT_PORT}"),
           *esp_dir(L, R, 5), *esp_dir(R, L, 5),
           fact("nothing on 500/4500", "udp.port == 500 || udp.port == 4500", count=0),
           esp_decrypts(), ike_decrypts()],
    notes="No daemon on these machines floats the responder's custom port: strongSwan moves a "
          "remote port only from 500 to 4500, so the responder's IKE port carries IKE_SA_INIT "
          "and the ESP alike. An analyzer that knows ESP-in-UDP only on 4500 sees an IKE SA "
          "without traffic and the initiator's port change as a NAT remapping.",
)
def ikev2_custom_ports(ctx: Ctx) -> None:
    lc, rc = pairc(ctx, conn_extra={"remote_port": IKE_PORT})
    rc["connections"]["lab"].pop("remote_port", None)
    std(ctx, lc, rc, ls=_PORTS, rs=_PORTS)
    ctx.start_capture()
    ctx.left.initiate()
    ctx.ping(5, check=True)


@scenario(
    name="ikev2_custom_ports_nat", title=f"IKEv2 on custom ports ({IKE_PORT}/{NATT_PORT}) through "
                                         "a NAT that keeps the ports, healthy", protocol="ikev2",
    nat=True, inside=True,
    configured=f"As ikev2_custom_ports (`charon.port = {IKE_PORT}`, `port_nat_t = {NATT_PORT}` "
               f"on both sides, `remote_port = {IKE_PORT}`; IKE aes128-sha256-ecp256, ESP "
               "aes128gcm16), with the initiator 10.99.0.2 behind the router's masquerade, which "
               "remaps only UDP 500/4500 and so keeps these ports; initiator `keep_alive = 5s`. "
               "Two capture points: outside the NAT (m-r, main) and inside (m-l, `-inside`).",
    fault="none (real NAT that keeps the ports, custom ports)",
    shows=f"Outside: IKE_SA_INIT from the NAT's address 198.51.100.1 port {IKE_PORT} to "
          f"{IKE_PORT}, IKE_AUTH from its {NATT_PORT}, ESP both ways between {NATT_PORT} and "
          f"{IKE_PORT}, NAT keepalives from the initiator every 5 s while idle, more pings, "
          f"DELETEs. Only the address is translated: from outside, the NAT-D hashes alone "
          f"cannot tell this NAT from forced encapsulation (kernel-libipsec fakes the source "
          f"hash on both sides); the initiator's keepalives can (it logs 'local host is behind "
          f"NAT, sending keep alives'). Inside: the initiator's own address 10.99.0.2.",
    timeout=90,
    decode_as=[f"udp.port=={IKE_PORT},udpencap"],
    keyless=[F("NAT_DETECTED"),
             F("NAT_DETECTED", capture="ikev2_custom_ports_nat-inside.pcap")],
    forbidden=[c for c in NO_FAILURE if c != "NAT_DETECTED"]
    + ["NAT_MAPPING_CHANGED", "NAT_KEEPALIVE_MISSING", "NAT_T_NOT_USED",
       "NAT_ENCAPSULATION_FORCED"],
    verdicts={"main": [V(
        "healthy", None,
        "the tunnel came up through the NAT on the configured ports (both charons log it "
        "established, the initiator 'local host is behind NAT') and all pings were answered",
        tunnel=f"{NATR}<->{R}")],
        "ikev2_custom_ports_nat-inside.pcap": [V(
            "healthy", None, "the same tunnel seen inside the NAT: established, pings answered",
            tunnel=f"10.99.0.2<->{R}")]},
    facts=[ike(34, 2, extra=f"udp.port == {IKE_PORT}"),
           fact("the initiator's IKE comes from the NAT's address with its own ports",
                f"isakmp && ip.src == {NATR} && (udp.srcport == {IKE_PORT} || "
                f"udp.srcport == {NATT_PORT})", min=3),
           fact("NAT keepalives from the initiator (outside)",
                f"udpencap.nat_keepalive && ip.src == {NATR}", min=2),
           *esp_dir(NATR, R, 8), *esp_dir(R, NATR, 8),
           fact("nothing on 500/4500", "udp.port == 500 || udp.port == 4500", count=0),
           fact(f"inside: the initiator uses 10.99.0.2:{IKE_PORT}/{NATT_PORT}",
                f"isakmp && ip.src == 10.99.0.2 && (udp.srcport == {IKE_PORT} || "
                f"udp.srcport == {NATT_PORT})", min=3,
                capture="ikev2_custom_ports_nat-inside.pcap"),
           *esp_dir("10.99.0.2", R, 8, capture="ikev2_custom_ports_nat-inside.pcap")],
)
def ikev2_custom_ports_nat(ctx: Ctx) -> None:
    lc, rc = pairc(ctx, proposals="aes128-sha256-ecp256", esp="aes128gcm16",
                   conn_extra={"dpd_delay": "20s", "remote_port": IKE_PORT})
    rc["connections"]["lab"].pop("remote_port", None)
    std(ctx, lc, rc, ls={"charon": {**_PORTS["charon"], "keep_alive": "5s"}}, rs=_PORTS)
    ctx.start_capture()
    ctx.left.initiate()
    ctx.ping(5, check=True)
    ctx.sleep(12)
    ctx.ping(3, check=True)
