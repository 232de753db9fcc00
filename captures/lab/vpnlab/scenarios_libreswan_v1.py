"""libreswan 4.10 IKEv1 scenarios (Main Mode / Aggressive Mode / Quick Mode failures as pluto
behaves on the wire).  Registered into :data:`vpnlab.scenarios.SCENARIOS` on import.

No kernel ESP here (lab-facts.md): libreswan is used for what happens before any ESP state is
installed — phase 1 and a Quick Mode that is refused."""

from __future__ import annotations

from .ipsec import WRONG_PSK
from .lab import Ctx
from .scenarios import F, L, R, fact, ike, notify, scenario
from .scenarios import V as verdict
from .net import LEFT_OUT
from .scenarios_libreswan import BOTH, LSW, lsw_conn, lsw_secrets

V1 = {"ikev1-policy": "accept"}


def v1_conn(left: str = LEFT_OUT, **extra) -> dict:
    return lsw_conn(left=left, ikev2=False,
                    ike_alg=extra.pop("ike_alg", "aes128-sha2_256;modp2048"),
                    esp=extra.pop("esp", "aes128-sha2_256"), extra=extra)


def v1_secrets(psk: str | None = None) -> str:
    return lsw_secrets(psk) if psk else lsw_secrets()


def v1_attempt(ctx: Ctx, right: dict, left: dict, right_psk: str | None = None) -> None:
    """Both plutos (IKEv1 allowed), the capture, and one initiation from the left until pluto
    gives up (or 30 s)."""
    ctx.pluto("right", {"lab": right}, v1_secrets(right_psk), setup=V1)
    ctx.pluto("left", {"lab": left}, v1_secrets(), setup=V1)
    ctx.start_capture()
    ctx.plutos["left"].initiate("lab", until="giving up", timeout=30)
    ctx.sleep(0.5)


@scenario(
    name="libreswan_ikev1_wrong_psk", title="libreswan IKEv1 Main Mode with a wrong pre-shared "
    "key: nobody says so, both sides retransmit", protocol="ikev1", implementations=LSW,
    configured="libreswan 4.10 on both sides, IKEv1 Main Mode PSK aes128-sha2_256/modp2048; "
               "the responder's PSK differs; `retransmit-timeout=10s`.",
    fault="PSK mismatch (configuration on the responder)",
    shows="Main Mode 1-4 in the clear; the initiator's Main Mode 5 (encrypted with a key the "
          "responder derived differently) is never answered with Main Mode 6: pluto sends no "
          "notification for a PSK mismatch, the responder retransmits Main Mode 4 and the "
          "initiator Main Mode 5 until both give up.",
    timeout=60,
    keyless=[F("IKE_AUTH_FAILED", "inferred")],
    forbidden=["IKE_NO_PROPOSAL_CHOSEN", "DECODE_ERRORS", "ESP_ONE_WAY", "IKE_SA_FLAPPING"],
    facts=[ike(2, min=6), fact("Main Mode 5 retransmitted",
                               f"isakmp.exchangetype == 2 && ip.src == {L} && "
                               "isakmp.flags & 0x01", min=2),
           fact("no Quick Mode", "isakmp.exchangetype == 32", count=0)],
    verdicts={"main": [verdict(
        "failing", "IKE_AUTH_FAILED",
        "the PSKs differ: the responder cannot decrypt Main Mode 5 (pluto logs a malformed "
        "payload / possible authentication failure) and never answers it; the initiator gives "
        "up after its retransmissions", stage="authentication")]},
)
def libreswan_ikev1_wrong_psk(ctx: Ctx) -> None:
    v1_attempt(ctx, v1_conn(), v1_conn(), right_psk=WRONG_PSK)


@scenario(
    name="libreswan_ikev1_no_proposal", title="libreswan IKEv1 Main Mode proposal mismatch",
    protocol="ikev1", implementations=LSW,
    configured="libreswan 4.10 on both sides, IKEv1 Main Mode PSK; initiator "
               "`ike=aes128-sha1;modp2048`, responder `ike=aes256-sha2_512;modp4096` only.",
    fault="IKE proposal mismatch (configuration on the responder)",
    shows="Main Mode 1 answered by a cleartext Informational carrying NO_PROPOSAL_CHOSEN; the "
          "initiator treats it as unauthenticated and retransmits Main Mode 1 until it gives up.",
    timeout=60,
    keyless=[F("IKE_NO_PROPOSAL_CHOSEN")],
    forbidden=["IKE_AUTH_FAILED", "DECODE_ERRORS", "IKE_SA_FLAPPING"],
    facts=[ike(2, extra=f"ip.src == {L}", min=2), notify(5, 14, resp=False),
           fact("no Main Mode 3", "isakmp.exchangetype == 2 && isakmp.nextpayload == 4",
                count=0)],
    verdicts={"main": [verdict(
        "failing", "IKE_NO_PROPOSAL_CHOSEN",
        "the responder logs that no proposal matched and answers NO_PROPOSAL_CHOSEN; no IKE SA",
        stage="negotiation")]},
)
def libreswan_ikev1_no_proposal(ctx: Ctx) -> None:
    v1_attempt(ctx, v1_conn(ike_alg="aes256-sha2_512;modp4096"),
               v1_conn(ike_alg="aes128-sha1;modp2048"))


@scenario(
    name="libreswan_ikev1_qm_no_proposal", title="libreswan IKEv1 Quick Mode proposal mismatch "
    "(phase 1 up, phase 2 refused)", protocol="ikev1", implementations=LSW,
    configured="libreswan 4.10 on both sides, IKEv1 Main Mode PSK aes128-sha2_256/modp2048; "
               "initiator `esp=aes128-sha1`, responder `esp=aes256-sha2_512` only.",
    fault="ESP (phase 2) proposal mismatch (configuration on the responder)",
    shows="Main Mode 1-6 complete; Quick Mode 1 answered by an encrypted Informational "
          "(NO_PROPOSAL_CHOSEN); pluto ignores it and re-sends Quick Mode 1; no ESP.",
    timeout=60,
    keyless=[F("CHILD_SA_FAILED", "inferred")],
    forbidden=["IKE_AUTH_FAILED", "DECODE_ERRORS", "ESP_ONE_WAY", "IKE_NO_PROPOSAL_CHOSEN"],
    facts=[ike(2, min=6), ike(32, extra=f"ip.src == {L}", min=1), fact("no ESP", "esp", count=0)],
    verdicts={"main": [verdict(
        "failing", "CHILD_SA_FAILED",
        "phase 1 is established on both sides; the responder logs no acceptable ESP proposal "
        "and refuses Quick Mode; no child SA", stage="child_sa")]},
)
def libreswan_ikev1_qm_no_proposal(ctx: Ctx) -> None:
    v1_attempt(ctx, v1_conn(esp="aes256-sha2_512"), v1_conn(esp="aes128-sha1"))


@scenario(
    name="libreswan_ikev1_aggressive_wrong_psk", title="libreswan IKEv1 Aggressive Mode with a "
    "wrong pre-shared key", protocol="ikev1", implementations=LSW,
    configured="libreswan 4.10 on both sides, IKEv1 Aggressive Mode PSK "
               "(`aggressive=yes`, one proposal aes128-sha2_256/modp2048); the responder's "
               "PSK differs.",
    fault="PSK mismatch (configuration on the responder)",
    shows="Aggressive Mode 1 and 2; the initiator cannot verify the responder's HASH_R and "
          "answers with INVALID_HASH_INFORMATION in the clear, which the responder drops unread "
          "('Informational Exchange message must be encrypted'); no Aggressive Mode 3; the "
          "responder forgets the incomplete state after 10 s.",
    timeout=60,
    keyless=[F("IKE_AUTH_FAILED", "inferred")],
    forbidden=["IKE_NO_PROPOSAL_CHOSEN", "DECODE_ERRORS", "IKE_SA_FLAPPING"],
    facts=[ike(4, extra=f"ip.src == {L}", min=1), fact("no Quick Mode", "isakmp.exchangetype == 32",
                                           count=0)],
    verdicts={"main": [verdict(
        "failing", "IKE_AUTH_FAILED",
        "the PSKs differ: the initiator logs that the responder's hash does not verify "
        "(possible authentication failure) and sends no Aggressive Mode 3",
        stage="authentication")]},
)
def libreswan_ikev1_aggressive_wrong_psk(ctx: Ctx) -> None:
    v1_attempt(ctx, v1_conn(aggressive="yes"), v1_conn(aggressive="yes"), right_psk=WRONG_PSK)


# =========================================================================== IKEv2, libreswan

@scenario(
    name="libreswan_ikev2_wrong_psk", title="libreswan IKEv2 with a wrong pre-shared key "
    "(libreswan responder)", protocol="ikev2", implementations=LSW,
    configured="libreswan 4.10 on both sides, IKEv2 PSK aes128-sha2_256/modp2048, initiator "
               "childless (`omit-v2-ike-auth-child`); the responder's PSK differs.",
    fault="PSK mismatch (configuration on the responder)",
    shows="IKE_SA_INIT, the IKE_AUTH request and the responder's encrypted IKE_AUTH response "
          "carrying AUTHENTICATION_FAILED; no IKE SA.",
    timeout=60,
    keyless=[F("IKE_AUTH_FAILED", "inferred")],
    forbidden=["IKE_NO_PROPOSAL_CHOSEN", "DECODE_ERRORS", "IKE_NO_RESPONSE", "IKE_SA_FLAPPING"],
    facts=[ike(34, 2), ike(35, min=2), fact("no ESP", "esp", count=0)],
    verdicts={"main": [verdict(
        "failing", "IKE_AUTH_FAILED",
        "the responder logs that the PSK authentication failed and answers "
        "AUTHENTICATION_FAILED; the initiator logs the IKE SA authentication request rejected",
        stage="authentication")]},
)
def libreswan_ikev2_wrong_psk(ctx: Ctx) -> None:
    from .scenarios_libreswan import CHILDLESS
    ctx.pluto("right", {"lab": lsw_conn()}, lsw_secrets(WRONG_PSK))
    ctx.pluto("left", {"lab": lsw_conn()}, lsw_secrets(), impair=(CHILDLESS,))
    ctx.start_capture()
    ctx.plutos["left"].initiate("lab", until="AUTHENTICATION_FAILED", timeout=15)
    ctx.sleep(1)


@scenario(
    name="libreswan_ikev2_id_mismatch", title="libreswan IKEv2: the responder expects another "
    "identity", protocol="ikev2", implementations=LSW,
    configured="libreswan 4.10 on both sides, IKEv2 PSK; the responder's conn expects "
               "`rightid=@other.lab.example`, the initiator sends `@left.lab.example`; "
               "initiator childless.",
    fault="identity mismatch (configuration on the responder)",
    shows="IKE_SA_INIT, then the IKE_AUTH request answered by an encrypted error "
          "(no connection matches the initiator's ID); no IKE SA.",
    timeout=60,
    keyless=[F("IKE_AUTH_FAILED", "inferred")],
    forbidden=["IKE_NO_PROPOSAL_CHOSEN", "DECODE_ERRORS", "IKE_SA_FLAPPING"],
    facts=[ike(34, 2), ike(35, min=2), fact("no ESP", "esp", count=0)],
    verdicts={"main": [verdict(
        "failing", "IKE_AUTH_FAILED",
        "the responder finds no connection for the initiator's identity and refuses the "
        "IKE_AUTH; no IKE SA", stage="authentication")]},
)
def libreswan_ikev2_id_mismatch(ctx: Ctx) -> None:
    from .scenarios_libreswan import CHILDLESS
    right = lsw_conn(extra={"leftid": "@other.lab.example"})
    ctx.pluto("right", {"lab": right},
              lsw_secrets() + "@other.lab.example @right.lab.example : PSK "
              '"pcapvpn-lab-psk-5b8e1d"\n')
    ctx.pluto("left", {"lab": lsw_conn()}, lsw_secrets(), impair=(CHILDLESS,))
    ctx.start_capture()
    ctx.plutos["left"].initiate("lab", until="AUTHENTICATION_FAILED", timeout=15)
    ctx.sleep(1)


@scenario(
    name="interop_strongswan_libreswan_ts_unacceptable", title="strongSwan initiator, "
    "libreswan responder: traffic selectors that do not match (TS_UNACCEPTABLE)",
    protocol="ikev2", implementations=BOTH,
    configured="strongSwan 5.9.8 initiator asking for 10.10.1.0/24 <-> 10.30.0.0/16; libreswan "
               "4.10 responder with `leftsubnet=10.20.1.0/24`, `rightsubnet=10.10.1.0/24`; "
               "IKEv2 PSK aes128-sha2_256/modp2048, ESP aes128-sha2_256.",
    fault="traffic selector mismatch (configuration)",
    shows="IKE_SA_INIT, IKE_AUTH whose response authenticates the IKE SA but refuses the child "
          "SA (TS_UNACCEPTABLE, encrypted); no ESP.",
    timeout=60,
    keyless=[],
    with_keys=[F("IKE_TS_UNACCEPTABLE", "decrypted")],
    forbidden=["IKE_NO_PROPOSAL_CHOSEN", "IKE_AUTH_FAILED", "DECODE_ERRORS", "ESP_ONE_WAY"],
    facts=[ike(34, 2), ike(35, min=2), fact("no ESP", "esp", count=0),
           notify(35, 38, keys=True)],
    verdicts={"main": [verdict(
        "failing", "CHILD_SA_FAILED",
        "libreswan logs that no connection matches the proposed traffic selectors and answers "
        "TS_UNACCEPTABLE (encrypted: without keys only the missing child SA shows)",
        stage="child_sa")]},
    verdicts_with_keys={"main": [verdict(
        "failing", "IKE_TS_UNACCEPTABLE",
        "with the keys the IKE_AUTH response's TS_UNACCEPTABLE is visible", stage="child_sa")]},
    notes="Keys: strongSwan (the initiator) wrote the IKE keys (`keys/`).",
)
def interop_strongswan_libreswan_ts_unacceptable(ctx: Ctx) -> None:
    from .ipsec import pair
    ctx.pluto("right", {"lab": lsw_conn(left="%any")}, lsw_secrets())
    ctx.charon("left", {}, pair(LEFT_OUT, left={"remote_ts": "10.30.0.0/16"})[0])
    ctx.start_capture()
    ctx.left.initiate(check=False, timeout=10)
    ctx.sleep(1.5)


@scenario(
    name="libreswan_ikev1_nat_4500_blocked", title="libreswan IKEv1 behind NAT, UDP 4500 "
    "blocked after NAT detection (Main Mode 5 never arrives)", protocol="ikev1",
    implementations=LSW, nat=True,
    configured="libreswan 4.10 on both sides, IKEv1 Main Mode PSK aes128-sha2_256/modp2048; "
               "initiator 10.99.0.2 behind the masquerading router; capture inside the NAT "
               "(m-l) because the router drops the packets before m-r.",
    fault="router drops `udp dport 4500` (UDP 500 passes)",
    shows="Main Mode 1-4 on UDP 500 with NAT-D payloads (a real NAT), then Main Mode 5 on 4500 "
          "retransmitted without an answer while the responder, which never got it, keeps "
          "re-sending Main Mode 4 on 500 — the same wire pattern as a PSK mismatch, except "
          "that Main Mode 5 went to other ports than the ones that worked.",
    capture="m-l", timeout=60,
    keyless=[F("NAT_T_BLOCKED"), F("NAT_DETECTED")],
    forbidden=["IKE_NO_PROPOSAL_CHOSEN", "ESP_ONE_WAY", "DECODE_ERRORS", "IKE_AUTH_FAILED"],
    facts=[ike(2, min=4, extra="udp.port == 500"),
           ike(2, min=2, extra="udp.dstport == 4500 && ip.src == 10.99.0.2")],
    verdicts={"main": [verdict(
        "failing", "NAT_T_BLOCKED",
        "the responder's log shows Main Mode up to its message 4 and no message 5: Main Mode 5 "
        "on UDP 4500 never reached it; the initiator gives up", tunnel=f"10.99.0.2<->{R}",
        stage="nat_traversal")]},
)
def libreswan_ikev1_nat_4500_blocked(ctx: Ctx) -> None:
    ctx.topo.rule("udp dport 4500 drop")
    v1_attempt(ctx, v1_conn(left="%any"), v1_conn(left="10.99.0.2"))


@scenario(
    name="libreswan_ikev2_ike_rekey", title="libreswan IKEv2 IKE SA rekey (CREATE_CHILD_SA for "
    "the IKE SA, childless), healthy", protocol="ikev2", implementations=LSW,
    configured="libreswan 4.10 on both sides, IKEv2 PSK aes128-sha2_256/modp2048, initiator "
               "childless (`omit-v2-ike-auth-child`); `whack --rekey-ike` on the initiator two "
               "seconds after the IKE SA is up.",
    fault="none",
    shows="IKE_SA_INIT and IKE_AUTH (childless), then a CREATE_CHILD_SA exchange that rekeys "
          "the IKE SA (new SPIs, KE and nonces) and an INFORMATIONAL that deletes the old IKE "
          "SA; the new IKE SA idles until the initiator stops and deletes it.",
    timeout=60,
    keyless=[],
    forbidden=["IKE_NO_RESPONSE", "IKE_SA_FLAPPING", "IKE_PEER_RESTART", "IKE_AUTH_FAILED",
               "DECODE_ERRORS", "IKE_REKEY_COLLISION", "IKE_SIMULTANEOUS_INIT"],
    facts=[ike(34, 2), ike(35, 2), ike(36, min=2), ike(37, min=2),
           fact("no ESP (childless IKE SA)", "esp", count=0)],
    verdicts={"main": [verdict(
        "healthy", None,
        "both plutos log the IKE SA rekeyed ('rekeyed IKE SA' / 'established IKE SA' for the "
        "new one) and the old one deleted; nothing failed")]},
)
def libreswan_ikev2_ike_rekey(ctx: Ctx) -> None:
    from .scenarios_libreswan import CHILDLESS
    ctx.pluto("right", {"lab": lsw_conn(extra={"rekey": "yes"})}, lsw_secrets())
    left = ctx.pluto("left", {"lab": lsw_conn(extra={"rekey": "yes"})}, lsw_secrets(),
                     impair=(CHILDLESS,))
    ctx.start_capture()
    if not left.initiate("lab", until="established IKE SA", timeout=10):
        raise RuntimeError("the IKE SA was not established")
    ctx.sleep(2)
    left.whack("--rekey-ike", "--name", "lab")
    ctx.sleep(3)


@scenario(
    name="libreswan_ikev2_no_response", title="libreswan IKEv2 initiator, responder silent: "
    "three attempts, each retransmitted, none answered", protocol="ikev2", implementations=LSW,
    configured="libreswan 4.10 initiator, IKEv2 PSK; `retransmit-timeout=5s`, "
               "`keyingtries=3`; the responder's namespace runs no IKE daemon and the router "
               "drops UDP 500 towards it (no ICMP); capture on the initiator's side of the router "
               "(m-l).",
    fault="responder unreachable (IKE daemon down / UDP 500 filtered)",
    shows="IKE_SA_INIT retransmitted at 0.5, 0.5, 1, 2 s until the 5 s retransmit timeout, then "
          "a new attempt with a new initiator SPI, three attempts in all; nothing from the "
          "responder.",
    capture="m-l", timeout=90,
    keyless=[F("IKE_NO_RESPONSE")],
    forbidden=["IKE_SA_FLAPPING", "IKE_PEER_RESTART", "IKE_AUTH_FAILED", "DECODE_ERRORS",
               "IKE_SIMULTANEOUS_INIT"],
    facts=[ike(34, resp=False, min=6), ike(34, 0, resp=True),
           fact("several attempts (initiator SPIs)", "isakmp.exchangetype == 34",
                field="isakmp.ispi", min_distinct=2)],
    verdicts={"main": [verdict(
        "failing", "IKE_NO_RESPONSE",
        "the initiator logs 'No response (or no acceptable response) to our first IKEv2 "
        "message' for each attempt; the responder never saw a packet",
        stage="reachability")]},
)
def libreswan_ikev2_no_response(ctx: Ctx) -> None:
    ctx.pluto("left", {"lab": lsw_conn(extra={"retransmit-timeout": "5s", "keyingtries": "3"})},
              lsw_secrets())
    ctx.topo.rule("udp dport 500 drop")
    ctx.start_capture()
    ctx.plutos["left"].initiate("lab")
    ctx.sleep(24)
