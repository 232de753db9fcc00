"""libreswan 4.10 scenarios (IKE level: no kernel ESP here) and libreswan <-> strongSwan
interop.  Registered into :data:`vpnlab.scenarios.SCENARIOS` on import."""

from __future__ import annotations

from .ipsec import LEFT_ID, PSK, RIGHT_ID, WRONG_PSK, pair
from .lab import Ctx
from .net import LEFT_NET, LEFT_OUT, RIGHT_NET, RIGHT_OUT
from .scenarios import F, L, R, fact, ike, notify, scenario
from .scenarios import V as verdict

LSW = ("libreswan",)
BOTH = ("strongswan", "libreswan")
def lsw_conn(*, left: str = LEFT_OUT, ikev2: bool = True, ike_alg: str = "aes128-sha2_256;modp2048",
             esp: str = "aes128-sha2_256", extra: dict | None = None) -> dict:
    """One libreswan conn (the same text on both sides: pluto finds its own end by address)."""
    c = {"keyexchange": "ike", "ikev2": "yes" if ikev2 else "no",
         "left": left, "leftid": f"@{LEFT_ID}", "leftsubnet": LEFT_NET,
         "right": RIGHT_OUT, "rightid": f"@{RIGHT_ID}", "rightsubnet": RIGHT_NET,
         "authby": "secret", "ike": ike_alg, "esp": esp, "auto": "add",
         "keyingtries": "1", "retransmit-timeout": "10s", "rekey": "no"}
    if not ikev2:
        c["ikev1-policy"] = None
    c.update(extra or {})
    return c


def lsw_secrets(psk: str = PSK) -> str:
    return f"@{LEFT_ID} @{RIGHT_ID} : PSK {psk}\n%any %any : PSK {psk}\n"


# =========================================================================== (j)

@scenario(
    name="libreswan_ikev2_no_proposal", title="libreswan IKEv2 NO_PROPOSAL_CHOSEN: each "
    "retransmitted IKE_SA_INIT answered with a fresh responder SPI", protocol="ikev2",
    implementations=LSW,
    configured="libreswan 4.10 on both sides, IKEv2 PSK; initiator `ike=aes128-sha1;modp2048`, "
               "responder `ike=aes256-sha2_512;dh20` only; `keyingtries=1`, "
               "`retransmit-timeout=10s`.",
    fault="IKE proposal mismatch (configuration on the responder)",
    shows="The initiator's IKE_SA_INIT and its retransmissions (0.5, 0.5, 1, 2, 4, 8 s apart), "
          "each answered within a millisecond by a cleartext NO_PROPOSAL_CHOSEN that carries a "
          "new responder SPI every time (same initiator SPI). libreswan's initiator treats an "
          "unauthenticated NO_PROPOSAL_CHOSEN as possibly forged, keeps retransmitting and "
          "gives up after `retransmit-timeout`.",
    timeout=90,
    keyless=[F("IKE_NO_PROPOSAL_CHOSEN")],
    forbidden=["IKE_NO_RESPONSE", "IKE_SA_FLAPPING", "IKE_AUTH_FAILED", "DECODE_ERRORS"],
    facts=[ike(34, resp=False, min=4), ike(34, resp=True, min=4),
           notify(34, 14),
           fact("one initiator SPI (retransmissions of one request)",
                "isakmp.exchangetype == 34", field="isakmp.ispi", distinct=1),
           fact("a fresh responder SPI in every NO_PROPOSAL_CHOSEN",
                "isakmp.exchangetype == 34 && isakmp.flag_r == 1", field="isakmp.rspi",
                min_distinct=4),
           fact("no IKE_AUTH", "isakmp.exchangetype == 35", count=0)],
    verdicts={"main": [verdict(
        "failing", "IKE_NO_PROPOSAL_CHOSEN",
        "the responder logs no acceptable proposal for every copy and the initiator gives up "
        "('No response (or no acceptable response) to our first IKEv2 message'): no IKE SA",
        stage="negotiation")]},
    notes="pluto (initiator) logs `ignoring IKE_SA_INIT response containing NO_PROPOSAL_CHOSEN "
          "notification` for each answer: an unauthenticated error could be forged, so it "
          "retransmits until `retransmit-timeout`. The responder's fresh SPI per answer means "
          "request/response pairing must go by initiator SPI and message ID.",
    pcapvpn_today=("pcapvpn at ee283aa (the lab's branch point) says `192.0.2.2<->198.51.100.2`: "
    "failing/IKE_NO_PROPOSAL_CHOSEN (expected failing/IKE_NO_PROPOSAL_CHOSEN); findings: "
    "IKE_NO_PROPOSAL_CHOSEN (e) x6, IKE_RETRANSMISSION (i), IKE_WEAK_CRYPTO (w) x5, "
    "IKE_SA_FLAPPING (w); it agrees with the expected verdict."),
)
def libreswan_ikev2_no_proposal(ctx: Ctx) -> None:
    ctx.pluto("right", {"lab": lsw_conn(ike_alg="aes256-sha2_512;dh20")}, lsw_secrets())
    ctx.pluto("left", {"lab": lsw_conn(ike_alg="aes128-sha1;modp2048")}, lsw_secrets())
    ctx.start_capture()
    ctx.plutos["left"].initiate("lab", until="No response", timeout=30)
    ctx.sleep(0.5)


# =========================================================================== helpers

SKIP_ESPINTCP = "tcp-skip-setsockopt-espintcp"   # no kernel espintcp here (lab-facts.md)
CHILDLESS = "omit-v2-ike-auth-child"             # RFC 6023 IKE SA without a child SA
# IKE in TCP as libreswan 4.10 writes it with SKIP_ESPINTCP: the stream prefix "IKETCP",
# then each message as a 4-byte zero non-ESP marker + the IKE message (Wireshark 4.0 has no
# RFC 8229 dissector: the facts read the TCP payload bytes; exchange type at offset 4 + 18)
def tcp_ike(exch: int, src: str | None = None, **kw) -> dict:
    name = {34: "IKE_SA_INIT", 35: "IKE_AUTH", 37: "INFORMATIONAL"}[exch]
    flt = (f"tcp.port == 4500 && tcp.len > 28 && tcp.payload[0:4] == 00:00:00:00 && "
           f"tcp.payload[22] == {exch:#x}" + (f" && ip.src == {src}" if src else ""))
    return fact(f"{name} in TCP" + (f" from {src}" if src else ""), flt, **kw)


def childless_tcp_facts() -> list[dict]:
    return [tcp_ike(34, L, min=1), tcp_ike(34, R, min=1), tcp_ike(35, L, min=1),
            tcp_ike(35, R, min=1), fact("no ESP (childless IKE SA)", "esp", count=0)]


HEALTHY_FORBID = ["IKE_NO_RESPONSE", "IKE_NO_PROPOSAL_CHOSEN", "IKE_AUTH_FAILED",
                  "IKE_TS_UNACCEPTABLE", "CHILD_SA_FAILED", "ESP_ONE_WAY", "ESP_NO_TRAFFIC",
                  "NAT_T_BLOCKED", "DECODE_ERRORS", "IKE_SA_FLAPPING"]


# =========================================================================== (k) (l) (m)

@scenario(
    name="libreswan_iketcp_healthy", title="libreswan IKEv2 over TCP (RFC 8229), childless "
    "IKE SA, healthy", protocol="ikev2", implementations=LSW,
    configured="libreswan 4.10 on both sides, IKEv2 PSK aes128-sha2_256/modp2048; initiator "
               "`enable-tcp=yes`, `tcp-remoteport=4500`; responder `listen-tcp=yes`; both with "
               f"the impairment `{SKIP_ESPINTCP}` (no kernel espintcp here) and the initiator "
               f"with `{CHILDLESS}` (IKE_AUTH without a child SA, RFC 6023).",
    fault="none",
    shows="A TCP connection to port 4500 that starts with the RFC 8229 `IKETCP` stream prefix, "
          "then length-framed IKE messages: IKE_SA_INIT and IKE_AUTH (no SA/TS payloads: "
          "childless), an idle period, then the DELETE exchange when the initiator stops and "
          "the TCP FIN.",
    timeout=60,
    keyless=[],
    forbidden=HEALTHY_FORBID + ["TCP_RESET", "TCP_NO_ANSWER"],
    facts=[fact("TCP handshake to 4500", "tcp.flags.syn == 1 && tcp.flags.ack == 0 && "
                "tcp.dstport == 4500", min=1),
           fact("IKETCP prefix", 'tcp.payload == "IKETCP"', count=1),
           fact("no IKE over UDP", "udp.port == 500 || udp.port == 4500", count=0),
           *childless_tcp_facts()],
    verdicts={"main": [verdict(
        "healthy", None,
        "both plutos log the IKE SA established over TCP ('established IKE SA'); no child SA "
        "was negotiated (childless), so no ESP is expected")]},
    notes="The stream as libreswan 4.10 writes it with the impairment `" + SKIP_ESPINTCP + "`: "
          "the 6-byte prefix `IKETCP`, then each IKE message preceded by the 4-byte zero "
          "non-ESP marker and *no* 16-bit length field (RFC 8229 section 3 puts a length "
          "before the marker; with the kernel's espintcp the framing may differ). Wireshark 4.0 "
          "has no RFC 8229 dissector (`isakmp` / `tcpencap` decode-as do not parse it), so the "
          "facts read the TCP payload bytes. ESP over TCP does not work without espintcp, "
          "hence the childless IKE SA.",
    pcapvpn_today=("pcapvpn at ee283aa (the lab's branch point) reports no tunnel for "
    "`libreswan_iketcp_healthy.pcap`."),
)
def libreswan_iketcp_healthy(ctx: Ctx) -> None:
    ctx.pluto("right", {"lab": lsw_conn()}, lsw_secrets(), setup={"listen-tcp": "yes"},
              impair=(SKIP_ESPINTCP,))
    ctx.pluto("left", {"lab": lsw_conn(extra={"enable-tcp": "yes", "tcp-remoteport": "4500"})},
              lsw_secrets(), impair=(SKIP_ESPINTCP, CHILDLESS))
    ctx.start_capture()
    if not ctx.plutos["left"].initiate("lab", until="established IKE SA", timeout=10):
        raise RuntimeError("the IKE SA over TCP was not established")
    ctx.sleep(2)


@scenario(
    name="libreswan_iketcp_refused", title="libreswan TCP-only initiator refused with RST "
    "(nothing listens on TCP 4500)", protocol="ikev2", implementations=LSW,
    configured="libreswan 4.10 on both sides; initiator `enable-tcp=yes` (TCP only), "
               "`tcp-remoteport=4500`, `keyingtries=1`; the responder listens on UDP only (no "
               "`listen-tcp`).",
    fault="no IKE-over-TCP listener on the responder (configuration)",
    shows="The initiator's TCP SYN to port 4500, answered by the responder's kernel with "
          "RST/ACK (pluto logs `TCP: connect(21) failed: Connection refused` and deletes the "
          "state: keyingtries=1); no IKE message is ever sent.",
    timeout=60,
    keyless=[F("TCP_RESET")],
    forbidden=["IKE_NO_PROPOSAL_CHOSEN", "IKE_AUTH_FAILED", "DECODE_ERRORS"],
    facts=[fact("SYN to 4500", "tcp.flags.syn == 1 && tcp.flags.ack == 0 && tcp.dstport == 4500",
                min=1),
           fact("RST from the responder", f"tcp.flags.reset == 1 && ip.src == {R}", min=1),
           fact("no IKE at all", "isakmp", count=0)],
    verdicts={"main": [verdict(
        "failing", "TCP_RESET",
        "the initiator logs that the TCP connection to 198.51.100.2:4500 was refused and "
        "never sends an IKE message; the responder sees nothing", stage="reachability")]},
    pcapvpn_today=("pcapvpn at ee283aa (the lab's branch point) reports no tunnel for "
    "`libreswan_iketcp_refused.pcap`."),
)
def libreswan_iketcp_refused(ctx: Ctx) -> None:
    ctx.pluto("right", {"lab": lsw_conn()}, lsw_secrets())
    ctx.pluto("left", {"lab": lsw_conn(extra={"enable-tcp": "yes", "tcp-remoteport": "4500"})},
              lsw_secrets(), impair=(SKIP_ESPINTCP, CHILDLESS))
    ctx.start_capture()
    ctx.plutos["left"].initiate("lab")
    ctx.sleep(8)


@scenario(
    name="libreswan_iketcp_fallback", title="libreswan fallback from blocked UDP to IKE over "
    "TCP", protocol="ikev2", implementations=LSW,
    configured="libreswan 4.10 on both sides; initiator `enable-tcp=fallback`, "
               "`tcp-remoteport=4500`, `keyingtries=2`, `retransmit-timeout=10s`; responder "
               f"`listen-tcp=yes`; `{SKIP_ESPINTCP}` on both, `{CHILDLESS}` on the initiator.",
    fault="router drops `udp dport 500` (IKE over UDP blocked); TCP passes",
    shows="IKE_SA_INIT over UDP 500 retransmitted (0.5, 0.5, 1, 2, 4 s) without an answer "
          "(the router drops them; the capture is on the initiator side, m-l), "
          "then the keying retry over TCP 4500 with the IKETCP prefix: IKE_SA_INIT and "
          "IKE_AUTH answered, childless IKE SA up.",
    capture="m-l", timeout=90,
    keyless=[],
    forbidden=["IKE_NO_PROPOSAL_CHOSEN", "IKE_AUTH_FAILED", "DECODE_ERRORS", "TCP_RESET",
               "NAT_T_BLOCKED"],
    facts=[fact("IKE_SA_INIT over UDP unanswered", "isakmp.exchangetype == 34 && udp",
                min=3), fact("no IKE answer over UDP", f"isakmp && udp && ip.src == {R}",
                             count=0),
           fact("IKETCP prefix", 'tcp.payload == "IKETCP"', count=1),
           *childless_tcp_facts()],
    verdicts={"main": [verdict(
        "degraded", "IKE_NO_RESPONSE",
        "the initiator logs the UDP IKE_SA_INIT timing out, then the TCP retry establishing "
        "the IKE SA: it works, after a failure it recovered from")]},
    pcapvpn_today=("pcapvpn at ee283aa (the lab's branch point) says `192.0.2.2<->198.51.100.2`: "
    "failing/IKE_NO_RESPONSE (expected degraded/IKE_NO_RESPONSE); findings: "
    "IKE_NO_RESPONSE (e)."),
)
def libreswan_iketcp_fallback(ctx: Ctx) -> None:
    ctx.pluto("right", {"lab": lsw_conn()}, lsw_secrets(), setup={"listen-tcp": "yes"},
              impair=(SKIP_ESPINTCP,))
    ctx.pluto("left", {"lab": lsw_conn(extra={"enable-tcp": "fallback",
                                              "tcp-remoteport": "4500", "keyingtries": "2"})},
              lsw_secrets(), impair=(SKIP_ESPINTCP, CHILDLESS))
    ctx.topo.rule("udp dport 500 drop")
    ctx.start_capture()
    if not ctx.plutos["left"].initiate("lab", until="established IKE SA", timeout=45):
        raise RuntimeError("the TCP fallback did not establish the IKE SA")
    ctx.sleep(2)


# =========================================================================== (n)

@scenario(
    name="libreswan_nat_4500_blocked", title="libreswan behind NAT, UDP 4500 blocked after NAT "
    "detection", protocol="ikev2", implementations=LSW, nat=True,
    configured="libreswan 4.10 on both sides, IKEv2 PSK; initiator 10.99.0.2 behind the "
               "masquerading router; `retransmit-timeout=10s`; capture inside the NAT (m-l) "
               "because the router drops the packets before m-r.",
    fault="router drops `udp dport 4500` (UDP 500 passes)",
    shows="IKE_SA_INIT on 500 with NAT_DETECTION notifies (a real NAT), then IKE_AUTH requests "
          "on 4500 retransmitted (0.5, 1, 2, 4 s ...) without an answer; the initiator gives "
          "up with `Possible authentication failure: no acceptable response to our first "
          "encrypted message`.",
    capture="m-l", timeout=60,
    keyless=[F("NAT_T_BLOCKED", "inferred"), F("NAT_DETECTED")],
    forbidden=["IKE_NO_PROPOSAL_CHOSEN", "ESP_ONE_WAY", "DECODE_ERRORS", "IKE_AUTH_FAILED"],
    facts=[ike(34, 2), ike(35, resp=False, min=3, extra="udp.dstport == 4500"),
           ike(35, 0, resp=True)],
    verdicts={"main": [verdict(
        "failing", "NAT_T_BLOCKED",
        "the initiator logs 'Possible authentication failure: no acceptable response to our "
        "first encrypted message' (its IKE_AUTH on 4500 never reached the responder, whose "
        "log shows only IKE_SA_INIT)", tunnel=f"10.99.0.2<->{R}", stage="nat_traversal")]},
    notes="libreswan's own wording blames authentication; the capture shows that the "
          "IKE_AUTH requests on 4500 never got through (the responder's log has no IKE_AUTH).",
    pcapvpn_today=("pcapvpn at ee283aa (the lab's branch point) says `10.99.0.2<->198.51.100.2`: "
    "failing/NAT_T_BLOCKED (expected failing/NAT_T_BLOCKED); findings: NAT_T_BLOCKED (e),"
    " NAT_DETECTED (i); it agrees with the expected verdict."),
)
def libreswan_nat_4500_blocked(ctx: Ctx) -> None:
    right = lsw_conn(left="%any")
    ctx.pluto("right", {"lab": right}, lsw_secrets())
    ctx.pluto("left", {"lab": lsw_conn(left="10.99.0.2")}, lsw_secrets(), impair=(CHILDLESS,))
    ctx.topo.rule("udp dport 4500 drop")
    ctx.start_capture()
    ctx.plutos["left"].initiate("lab", until="Possible authentication failure", timeout=30)
    ctx.sleep(0.5)


# =========================================================================== (o)

def _sw_right(psk: str = PSK, proposals: str = "aes128-sha256-modp2048", **kw) -> dict:
    return pair(LEFT_OUT, psk=psk, proposals=proposals, **kw)[1]


@scenario(
    name="interop_libreswan_strongswan_psk_mismatch", title="libreswan initiator, strongSwan "
    "responder: wrong pre-shared key (AUTHENTICATION_FAILED)", protocol="ikev2",
    implementations=BOTH,
    configured="libreswan 4.10 initiator (left), strongSwan 5.9.8 responder (right, "
               "kernel-libipsec), IKEv2 aes128-sha2_256/modp2048 PSK; the responder's PSK "
               "differs.",
    fault="PSK mismatch across implementations (configuration on the responder)",
    shows="IKE_SA_INIT, IKE_AUTH request (on 4500: strongSwan's fake NAT-D moves both to "
          "4500), an IKE_AUTH response with AUTHENTICATION_FAILED (encrypted); no ESP.",
    timeout=60, fast=True,
    keyless=[F("IKE_AUTH_FAILED", "inferred")],
    forbidden=["IKE_NO_PROPOSAL_CHOSEN", "ESP_ONE_WAY", "DECODE_ERRORS", "NAT_T_BLOCKED"],
    facts=[ike(34, 2), ike(35, min=2), fact("no ESP", "esp", count=0)],
    verdicts={"main": [verdict(
        "failing", "IKE_AUTH_FAILED",
        "strongSwan logs 'tried 1 shared key ... but MAC mismatched' and sends "
        "AUTHENTICATION_FAILED; libreswan logs 'IKE SA authentication request rejected by "
        "peer: AUTHENTICATION_FAILED'", stage="authentication")]},
    pcapvpn_today=("pcapvpn at ee283aa (the lab's branch point) says `192.0.2.2<->198.51.100.2`: "
    "failing/IKE_AUTH_FAILED (expected failing/IKE_AUTH_FAILED); findings: "
    "NAT_ENCAPSULATION_FORCED (i), IKE_AUTH_FAILED (e); it agrees with the expected "
    "verdict."),
)
def interop_libreswan_strongswan_psk_mismatch(ctx: Ctx) -> None:
    ctx.charon("right", {}, _sw_right(psk=WRONG_PSK))
    ctx.pluto("left", {"lab": lsw_conn()}, lsw_secrets())
    ctx.start_capture()
    ctx.plutos["left"].initiate("lab", until="AUTHENTICATION_FAILED", timeout=15)
    ctx.sleep(1)


@scenario(
    name="interop_libreswan_strongswan_no_proposal", title="strongSwan initiator, libreswan "
    "responder: IKE proposal mismatch", protocol="ikev2", implementations=BOTH,
    configured="strongSwan 5.9.8 initiator (left) proposing aes128-sha256-ecp256 only, "
               "libreswan 4.10 responder (right) allowing `ike=aes256-sha2_384;dh20` only.",
    fault="IKE proposal mismatch across implementations",
    shows="strongSwan's IKE_SA_INIT answered by libreswan's cleartext NO_PROPOSAL_CHOSEN; "
          "strongSwan accepts the unauthenticated error and gives up at once (keyingtries 1).",
    timeout=60, fast=True,
    keyless=[F("IKE_NO_PROPOSAL_CHOSEN")],
    forbidden=["IKE_NO_RESPONSE", "IKE_AUTH_FAILED", "DECODE_ERRORS", "IKE_SA_FLAPPING"],
    facts=[ike(34, 2), notify(34, 14), fact("no IKE_AUTH", "isakmp.exchangetype == 35",
                                            count=0)],
    verdicts={"main": [verdict(
        "failing", "IKE_NO_PROPOSAL_CHOSEN",
        "libreswan logs 'no local proposal matches remote proposals' and answers "
        "NO_PROPOSAL_CHOSEN; strongSwan logs 'received NO_PROPOSAL_CHOSEN notify error'",
        stage="negotiation")]},
    pcapvpn_today=("pcapvpn at ee283aa (the lab's branch point) says `192.0.2.2<->198.51.100.2`: "
    "failing/IKE_NO_PROPOSAL_CHOSEN (expected failing/IKE_NO_PROPOSAL_CHOSEN); findings: "
    "IKE_NO_PROPOSAL_CHOSEN (e), NAT_ENCAPSULATION_FORCED (i); it agrees with the "
    "expected verdict."),
)
def interop_libreswan_strongswan_no_proposal(ctx: Ctx) -> None:
    ctx.pluto("right", {"lab": lsw_conn(ike_alg="aes256-sha2_384;dh20")}, lsw_secrets())
    ctx.charon("left", {}, pair(LEFT_OUT, proposals="aes128-sha256-ecp256")[0])
    ctx.start_capture()
    ctx.left.initiate(check=False, timeout=10)
    ctx.sleep(1)


@scenario(
    name="interop_libreswan_strongswan_childless", title="libreswan initiator, strongSwan "
    "responder: childless IKE SA (RFC 6023), healthy", protocol="ikev2", implementations=BOTH,
    configured="libreswan 4.10 initiator with the impairment "
               f"`{CHILDLESS}` (IKE_AUTH without SA/TS payloads), strongSwan 5.9.8 responder "
               "(`childless = allow`, the default), IKEv2 PSK aes128-sha2_256/modp2048.",
    fault="none",
    shows="IKE_SA_INIT with CHILDLESS_IKEV2_SUPPORTED both ways, IKE_AUTH (on 4500) without a "
          "child SA, a few seconds idle, then the DELETE exchange when the initiator stops.",
    timeout=60,
    keyless=[],
    forbidden=HEALTHY_FORBID,
    facts=[ike(34, 2), notify(34, 16418), notify(34, 16418, resp=False), ike(35, 2),
           fact("no ESP (childless IKE SA)", "esp", count=0),
           fact("IKE_AUTH has no SA payload (decrypted)",
                "isakmp.exchangetype == 35 && isakmp.id.type", min=2, keys=True),
           fact("IKE_AUTH carries no traffic selectors (decrypted)",
                "isakmp.exchangetype == 35 && isakmp.ts.type", count=0, keys=True)],
    verdicts={"main": [verdict(
        "healthy", None,
        "strongSwan logs 'IKE_SA lab[1] established' and 'peer ... childless IKE_SA'; "
        "libreswan logs the IKE SA established; no child SA was requested, so no ESP is "
        "expected")]},
    notes="Keys: strongSwan (the responder) wrote the IKE keys (`keys/`).",
    pcapvpn_today=("pcapvpn at ee283aa (the lab's branch point) says `192.0.2.2<->198.51.100.2`: unknown"
    " (expected healthy); findings: NAT_ENCAPSULATION_FORCED (i)."),
)
def interop_libreswan_strongswan_childless(ctx: Ctx) -> None:
    ctx.charon("right", {}, _sw_right())
    ctx.pluto("left", {"lab": lsw_conn()}, lsw_secrets(), impair=(CHILDLESS,))
    ctx.start_capture()
    ctx.plutos["left"].initiate("lab")
    if not ctx.right.wait_log("established", 10):
        raise RuntimeError("the childless IKE SA was not established")
    ctx.sleep(3)


# =========================================================================== (p)

@scenario(
    name="libreswan_invalid_ke", title="libreswan IKEv2 INVALID_KE_PAYLOAD recovered "
    "(childless IKE SA)", protocol="ikev2", implementations=LSW,
    configured="libreswan 4.10 on both sides; initiator `ike=aes128-sha2_256;dh19,"
               "aes128-sha2_256;modp2048` (guesses DH 19 = ecp256 first), responder "
               f"`ike=aes128-sha2_256;modp2048` only; `{CHILDLESS}` on the initiator.",
    fault="DH group preference mismatch (recoverable)",
    shows="IKE_SA_INIT with a DH 19 KE answered by INVALID_KE_PAYLOAD requesting MODP-2048; "
          "the initiator resends IKE_SA_INIT with the suggested group (new initiator SPI), "
          "IKE_AUTH completes (childless), idle, DELETE.",
    timeout=60,
    keyless=[F("IKE_INVALID_KE")],
    forbidden=["IKE_NO_RESPONSE", "IKE_AUTH_FAILED", "DECODE_ERRORS", "IKE_SA_FLAPPING"],
    facts=[ike(34, min=4), notify(34, 17), ike(35, 2),
           fact("second IKE_SA_INIT carries a MODP-2048 KE",
                "isakmp.exchangetype == 34 && isakmp.key_exchange.dh_group == 14", min=2)],
    verdicts={"main": [verdict(
        "degraded", "IKE_INVALID_KE",
        "the responder logs 'initiator guessed wrong keying material group ... responding "
        "with INVALID_KE_PAYLOAD', the initiator resends with the suggested group and logs "
        "the IKE SA established: a failure it recovered from")]},
    pcapvpn_today=("pcapvpn at ee283aa (the lab's branch point) says `192.0.2.2<->198.51.100.2`: "
    "failing/IKE_INVALID_KE (expected degraded/IKE_INVALID_KE); findings: IKE_INVALID_KE "
    "(e)."),
)
def libreswan_invalid_ke(ctx: Ctx) -> None:
    ctx.pluto("right", {"lab": lsw_conn(ike_alg="aes128-sha2_256;modp2048")}, lsw_secrets())
    ctx.pluto("left", {"lab": lsw_conn(ike_alg="aes128-sha2_256;dh19,aes128-sha2_256;modp2048")},
              lsw_secrets(), impair=(CHILDLESS,))
    ctx.start_capture()
    if not ctx.plutos["left"].initiate("lab", until="established IKE SA", timeout=10):
        raise RuntimeError("the IKE SA was not established after INVALID_KE")
    ctx.sleep(2)
