"""strongSwan scenarios for the verdict contract (issue 13): recoveries, duplicates, clients
that leave, both peers tearing down, MTU black hole, IKEv1 DPD, childless IKE SAs.
Registered into :data:`vpnlab.scenarios.SCENARIOS` on import."""

from __future__ import annotations

import sys

from .lab import Ctx
from .net import LEFT_HOST, RIGHT_HOST
from .scenarios import (NATR, NO_FAILURE, F, L, R, V, esp_decrypts, esp_dir, fact, ike,
                        ike_decrypts, pairc, scenario, std, without)

# an initial IKE_SA_INIT / IKEv1 Main Mode 1 or Aggressive Mode 1 from the left gateway:
# the responder SPI / cookie (UDP payload bytes 8..15) is still zero
LEFT_INITIAL_INIT = f"ip saddr {L} udp dport 500 @th,128,64 0 drop"


def _right_initiates(rc: dict, name: str = "lab") -> None:
    """Let the responder's configuration initiate too (towards the left gateway)."""
    rc["connections"][name]["remote_addrs"] = L


# =========================================================================== (a)

@scenario(
    name="ikev2_ignored_init_duplicate", title="IKEv2 one gateway's IKE_SA_INIT ignored for "
    "~40 s while the peer's own IKE SA comes up; then both SAs exist, the duplicate is deleted",
    protocol="ikev2",
    configured="Both gateways may initiate (the right one has `remote_addrs = 192.0.2.2`); IKE "
               "aes128-sha256-ecp256, ESP aes128-sha256, `unique = replace` on both; the left "
               "gateway retransmits 6 times (2 s x 1.5^n: sends at 0, 2, 5, 9.5, 16.3, 26.4, "
               "41.6 s). Pings every 0.5 s from the left protected network throughout; capture "
               "on the left gateway's side (m-l).",
    fault="the router drops the left gateway's initial IKE_SA_INIT requests (`ip saddr "
          "192.0.2.2 udp dport 500 @th,128,64 0 drop`: responder SPI zero) for ~30 s, then "
          "lets them through",
    shows="The left gateway's IKE_SA_INIT retransmitted without an answer; meanwhile the right "
          "gateway initiates its own IKE SA (IKE_SA_INIT, IKE_AUTH with a child SA) and ESP "
          "flows both ways; once the drop is lifted the left gateway's next retransmission is "
          "answered and its IKE SA comes up too (a second IKE SA and child SA for the same "
          "pair); the right gateway, seeing the same identities again (`unique = replace`), "
          "deletes the older IKE SA (the one it had initiated) with a DELETE; ESP continues on "
          "the surviving SA; DELETEs at the end.",
    capture="m-l", timeout=120,
    keyless=[F("IKE_SIMULTANEOUS_INIT", "inferred")],
    forbidden=["IKE_NO_PROPOSAL_CHOSEN", "IKE_AUTH_FAILED", "DECODE_ERRORS", "ESP_ONE_WAY",
               "NAT_T_BLOCKED", "NAT_DETECTED"],
    facts=[fact("left gateway's initial IKE_SA_INIT retransmitted (one SPIi)",
                f"isakmp.exchangetype == 34 && isakmp.flag_r == 0 && ip.src == {L}",
                field="isakmp.ispi", distinct=1),
           ike(34, resp=False, extra=f"ip.src == {L}", min=6),
           ike(34, resp=False, extra=f"ip.src == {R}", min=1),
           fact("two IKE SAs authenticated (IKE_AUTH from both gateways)",
                "isakmp.exchangetype == 35 && isakmp.flag_r == 0", field="ip.src",
                values=[L, R]),
           fact("a DELETE of one IKE SA (decrypted)",
                "isakmp.exchangetype == 37 && isakmp.delete.protoid == 1", min=1, keys=True),
           *esp_dir(L, R, 20, spis=None), *esp_dir(R, L, 20, spis=None), esp_decrypts()],
    verdicts={"main": [V(
        "degraded", "IKE_SIMULTANEOUS_INIT",
        "the left gateway's IKE_SA_INIT went unanswered for ~40 s while the right gateway's "
        "own IKE SA came up; when it was answered both IKE SAs existed and the right gateway "
        "deleted the older one (the one it initiated; charon logs the duplicate replaced), so "
        "the left-initiated IKE SA survived and ESP kept flowing both ways")]},
    pcapvpn_today=("pcapvpn at ee283aa (the lab's branch point) says `192.0.2.2<->198.51.100.2`: "
    "degraded/IKE_RETRANSMISSION (expected degraded/IKE_SIMULTANEOUS_INIT); findings: "
    "IKE_RETRANSMISSION (w), IKE_SIMULTANEOUS_INIT (w), NAT_ENCAPSULATION_FORCED (i)."),
)
def ikev2_ignored_init_duplicate(ctx: Ctx) -> None:
    lc, rc = pairc(ctx, proposals="aes128-sha256-ecp256", conn_extra={"unique": "replace"})
    _right_initiates(rc)
    std(ctx, lc, rc, ls={"charon": {"retransmit_tries": 6}})
    ctx.topo.rule(LEFT_INITIAL_INIT)
    ctx.start_capture()
    ctx.left.initiate_bg(timeout=90)
    ctx.note("left gateway initiates (its IKE_SA_INIT is dropped)")
    ctx.sleep(3)
    ctx.right.initiate()
    ctx.note("right gateway initiated its own IKE SA")
    ping = ctx.ping_bg(100, interval=0.5)
    ctx.sleep(27)
    ctx.topo.flush_rules()
    ctx.note("drop lifted")
    if not ctx.left.wait_log("CHILD_SA net{2} established", 25):
        raise RuntimeError("the left gateway's IKE SA did not come up after the drop")
    # charon schedules the delete of the duplicate ("due to uniqueness policy and suspected
    # reauthentication") and sends it some seconds later
    if not ctx.right.wait_log("deleting IKE_SA lab[1]", 30):
        raise RuntimeError("the duplicate IKE SA was not deleted")
    ctx.sleep(3)
    ctx.procs.stop(ping)


# =========================================================================== (b)

SUBNET2 = "10.20.2.0/24"
HOST2 = "10.20.2.1"
SINK_PORT = 5514


def _udp_sink(ctx: Ctx, host: str, port: int):
    """A UDP receiver in the right namespace (so one-way traffic draws no ICMP)."""
    code = ("import socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); "
            f"s.bind(({host!r},{port})); n=0\nwhile True: s.recv(2048)")
    return ctx.procs.start("udp-sink", ctx.topo.ns_cmd(ctx.topo.right, sys.executable, "-c",
                                                      code), logfile=ctx.work / "sink.out")


def _udp_send(ctx: Ctx, dst: str, port: int, count: int, interval: float):
    code = ("import socket,time; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            f"for i in range({count}):\n    s.sendto(b'lab syslog line %d' % i, ({dst!r},{port}))"
            f"; time.sleep({interval})")
    ctx.topo.sh(ctx.topo.left, sys.executable, "-c", code, timeout=count * interval + 15)
    ctx.note(f"{count} one-way UDP datagrams {LEFT_HOST} -> {dst}:{port}")


@scenario(
    name="ikev1_ignored_mm_parallel_qm", title="IKEv1 site-to-site: one gateway's Main Mode "
    "never answered, the peer's own Main Mode succeeds with two parallel Quick Modes",
    protocol="ikev1",
    configured="IKEv1 Main Mode PSK aes128-sha256-modp2048, two child SAs: `net1` 10.10.1.0/24 "
               "<-> 10.20.1.0/24 and `net2` 10.10.1.0/24 <-> 10.20.2.0/24 (ESP aes128-sha256); "
               "both gateways may initiate. Traffic: pings 10.10.1.1 -> 10.20.1.1 (net1, both "
               "ways) and one-way UDP datagrams 10.10.1.1 -> 10.20.2.1:5514 (net2, a syslog-"
               "like flow with no replies). Capture on the left gateway's side (m-l).",
    fault="the router drops the left gateway's Main Mode 1 (`ip saddr 192.0.2.2 udp dport 500 "
          "@th,128,64 0 drop`: responder cookie zero)",
    shows="The left gateway's Main Mode 1 sent 4 times without an answer; the right gateway's "
          "own Main Mode (6 messages) succeeds and it starts two Quick Modes at once (net1 and "
          "net2, 3 messages each); ESP from the left gateway on two SAs (net1 and net2), from "
          "the right gateway on one (net1: the replies to the pings); DELETEs at the end.",
    capture="m-l", timeout=90,
    keyless=[],
    forbidden=["ESP_ONE_WAY", "IKE_NO_PROPOSAL_CHOSEN", "IKE_AUTH_FAILED", "DECODE_ERRORS",
               "NAT_T_BLOCKED", "NAT_DETECTED"],
    facts=[fact("left gateway's Main Mode 1 retransmitted, never answered",
                f"isakmp.exchangetype == 2 && ip.src == {L} && "
                "isakmp.rspi == 00:00:00:00:00:00:00:00", min=3),
           fact("right gateway's Main Mode", f"isakmp.exchangetype == 2 && ip.src == {R}",
                min=3),
           ike(32, 6),
           fact("two Quick Modes (two message IDs)", "isakmp.exchangetype == 32",
                field="isakmp.messageid", distinct=2),
           *esp_dir(L, R, 20, spis=2), *esp_dir(R, L, 5, spis=1),
           fact("every ESP packet decrypts (pings on net1, UDP on net2)", "esp",
                equal_to_filter="icmp || udp.dstport == 5514", keys=True),
           fact("the UDP flow is carried by its own SA (decrypted)",
                "esp && udp.dstport == 5514", field="esp.spi", distinct=1, keys=True)],
    verdicts={"main": [V(
        "degraded", "IKE_NO_RESPONSE",
        "the left gateway's Main Mode was never answered (its charon gives up after 3 "
        "retransmits) while the right gateway's own Main Mode and both Quick Modes succeeded; "
        "ESP flowed both ways (left to right over two SAs, right to left over one): the "
        "tunnel works, one side's initiation was ignored")]},
    notes="The net2 SA carries traffic in one direction only by design (a one-way UDP flow); "
          "without keys the pairing of the two Quick Modes' SAs is unknown, so one-way ESP "
          "can only be judged for the tunnel direction as a whole.",
    pcapvpn_today=("pcapvpn at ee283aa (the lab's branch point) says `192.0.2.2<->198.51.100.2`: "
    "failing/IKE_NO_RESPONSE (expected degraded/IKE_NO_RESPONSE); findings: "
    "IKE_NO_RESPONSE (e), NAT_ENCAPSULATION_FORCED (i), ESP_ONE_WAY (e), DPD_TIMEOUT (e)."),
)
def ikev1_ignored_mm_parallel_qm(ctx: Ctx) -> None:
    kw = dict(version=1, secret_ids=False, esp="aes128-sha256", child="net1")
    lc, rc = pairc(ctx, **kw)
    for conf, local, remote in ((lc, "10.10.1.0/24", SUBNET2), (rc, SUBNET2, "10.10.1.0/24")):
        ch = conf["connections"]["lab"]["children"]
        ch["net2"] = dict(ch["net1"], local_ts=local, remote_ts=remote)
    _right_initiates(rc)
    ctx.topo.sh(ctx.topo.right, "ip", "addr", "add", f"{HOST2}/24", "dev", "lo")
    std(ctx, lc, rc)
    _udp_sink(ctx, HOST2, SINK_PORT)
    ctx.topo.rule(LEFT_INITIAL_INIT)
    ctx.start_capture()
    ctx.left.initiate_bg(child="net1", timeout=30)
    ctx.note("left gateway initiates (its Main Mode 1 is dropped)")
    ctx.sleep(1)
    p1 = ctx.right.initiate_bg(child="net1")
    p2 = ctx.right.initiate_bg(child="net2")
    for p in (p1, p2):
        p.popen.wait(30)
    ctx.note("right gateway: Main Mode + two Quick Modes")
    ping = ctx.ping_bg(20, interval=0.5)
    _udp_send(ctx, HOST2, SINK_PORT, 30, 0.3)
    ping.popen.wait(20)
    if not ctx.left.wait_log("giving up after", 20):
        raise RuntimeError("the left gateway's Main Mode did not give up")
    ctx.sleep(0.5)


# =========================================================================== (c)

@scenario(
    name="ikev2_ra_client_gone", title="IKEv2 remote-access client behind NAT disappears; the "
    "gateway's DELETE goes unanswered on UDP 4500", protocol="ikev2", nat=True,
    configured="Client 10.99.0.2 behind the masquerading router (`keep_alive = 5s`), gateway "
               "198.51.100.2; IKE aes128-sha256-ecp256, ESP aes128gcm16; capture on the "
               "gateway's side (m-r, outside the NAT).",
    fault="once the tunnel has carried traffic the client's link is cut (the router drops "
          "everything from and to 10.99.0.2, like a laptop closing its lid); the gateway "
          "then closes the IKE SA (`swanctl --terminate` on the gateway)",
    shows="IKE_SA_INIT, IKE_AUTH on 4500 (through the NAT, remapped ports), ESP both ways, "
          "NAT keepalives; then nothing from the client any more; the gateway's DELETE "
          "INFORMATIONAL on 4500 is sent and retransmitted 3 times without an answer.",
    timeout=90,
    keyless=[F("NAT_DETECTED", "inferred")],
    forbidden=["NAT_T_BLOCKED", "IKE_NO_PROPOSAL_CHOSEN", "IKE_AUTH_FAILED", "DECODE_ERRORS",
               "ESP_ONE_WAY"],
    facts=[ike(34, 2), ike(35, 2, extra="udp.port == 4500"),
           *esp_dir(NATR, R, 5), *esp_dir(R, NATR, 5),
           fact("gateway's DELETE retransmitted", f"isakmp.exchangetype == 37 && "
                f"isakmp.flag_r == 0 && ip.src == {R}", min=4),
           fact("no INFORMATIONAL response", "isakmp.exchangetype == 37 && isakmp.flag_r == 1",
                count=0),
           fact("the requests are one DELETE (decrypted)",
                "isakmp.exchangetype == 37 && isakmp.delete.protoid == 1", min=4, keys=True)],
    verdicts={"main": [V(
        "healthy", None,
        "the client's charon logs the tunnel up and its pings were answered; then the client "
        "vanished and the gateway's DELETE (its own teardown) went unanswered: the client "
        "left, nothing in the VPN failed (not NAT-T blocked: IKE_AUTH and ESP passed on 4500)",
        tunnel=f"{NATR}<->{R}")]},
    notes="The gateway logs `retransmit 1..3 of request with message ID 0` and `giving up "
          "after 3 retransmits` for the DELETE. The client's own DELETE at the end is dropped "
          "by the router and does not appear in the capture.",
    pcapvpn_today=("pcapvpn at ee283aa (the lab's branch point) says `198.51.100.1<->198.51.100.2`: "
    "failing/NAT_T_BLOCKED (expected healthy); findings: NAT_T_BLOCKED (e), NAT_DETECTED "
    "(i), NAT_ENCAPSULATION_FORCED (i)."),
)
def ikev2_ra_client_gone(ctx: Ctx) -> None:
    lc, rc = pairc(ctx, proposals="aes128-sha256-ecp256", esp="aes128gcm16")
    std(ctx, lc, rc, ls={"charon": {"keep_alive": "5s"}})
    ctx.start_capture()
    ctx.left.initiate()
    ctx.ping(5, check=True)
    ctx.sleep(6)
    ctx.topo.rule("ip saddr 10.99.0.2 drop")
    ctx.topo.rule("ip daddr 10.99.0.2 drop")
    ctx.note("client link cut")
    ctx.sleep(2)
    ctx.right.swanctl("--terminate", "--ike", "lab", "--timeout", "25", check=False, timeout=40)
    ctx.note("gateway terminated the IKE SA")
    ctx.right.wait_log("giving up after", 5)


# =========================================================================== (d)

@scenario(
    name="ikev2_peer_restart_recovery", title="IKEv2 responder restarts and the tunnel "
    "recovers; both gateways tear down at the end", protocol="ikev2",
    configured="As ikev2_peer_restart (IKE aes128-sha256-ecp256, ESP aes128-sha256, initiator "
               "DPD 5 s with `dpd_action = restart`, pings every 0.5 s), captured on the "
               "initiator's side (m-l); at the end both charons get SIGTERM at the same moment.",
    fault="the responder's charon is killed (SIGKILL) and started again without state",
    shows="A working tunnel; ICMP port unreachable while the responder is down; the "
          "initiator's ESP on the old SPI and its DPD on the old IKE SA go unanswered "
          "(retransmitted); it gives up and re-initiates: new IKE_SA_INIT/IKE_AUTH, new SPIs, "
          "ESP both ways again; at the end both gateways send DELETEs at the same moment.",
    capture="m-l", timeout=120, teardown="both",
    keyless=[F("IKE_PEER_RESTART", "inferred")],
    forbidden=["IKE_NO_PROPOSAL_CHOSEN", "IKE_AUTH_FAILED", "DECODE_ERRORS", "ESP_ONE_WAY"],
    facts=[ike(34, min=4), ike(35, min=4),
           fact("two IKE SAs", "isakmp.exchangetype == 34", field="isakmp.ispi", distinct=2),
           fact("two ESP SAs from the initiator (before/after)",
                f"esp && !icmp && ip.src == {L}", field="esp.spi", distinct=2),
           fact("ESP from the responder after the restart", f"esp && !icmp && ip.src == {R}",
                field="esp.spi", min_distinct=2),
           ike(37, resp=False, min=4), esp_decrypts()],
    verdicts={"main": [V(
        "degraded", "IKE_PEER_RESTART",
        "the responder's charon was killed and restarted; the initiator's DPD timed out, it "
        "re-initiated and logs the new CHILD_SA established, and ESP flowed both ways "
        "afterwards: a failure the tunnel recovered from")]},
    pcapvpn_today=("pcapvpn at ee283aa (the lab's branch point) says `192.0.2.2<->198.51.100.2`: "
    "unknown/ICMP_UNREACHABLE (expected degraded/IKE_PEER_RESTART); findings: "
    "ICMP_UNREACHABLE (e), NAT_ENCAPSULATION_FORCED (i), ESP_ONE_WAY (e), DPD_TIMEOUT "
    "(e), IKE_PEER_RESTART (w), ESP_SPI_MISMATCH (e)."),
)
def ikev2_peer_restart_recovery(ctx: Ctx) -> None:
    from .scenarios import ikev2_peer_restart
    ikev2_peer_restart(ctx)


# =========================================================================== (e)

@scenario(
    name="ikev2_esp_loss_teardown", title="IKEv2 tunnel with ~4 % ESP loss; both gateways send "
    "their DELETEs at the same moment at the end", protocol="ikev2",
    configured="IKE aes128-sha256-ecp256, ESP aes128-sha256; 300 pings 20 ms apart; capture "
               "on m-r (after the loss); at the end both charons get SIGTERM at the same "
               "moment.",
    fault="router drops 4 % of the initiator's ESP: `ip saddr 192.0.2.2 udp dport 4500 "
          "@th,64,32 != 0 numgen random mod 100 < 4 drop`",
    shows="IKE_SA_INIT, IKE_AUTH, ~288 of 300 ESP packets from the initiator with sequence "
          "gaps, the responder's replies, then two DELETE INFORMATIONAL requests (one from "
          "each gateway) in the same millisecond, neither answered (both daemons exit).",
    timeout=60, teardown="both",
    keyless=[F("ESP_SEQUENCE_GAP")],
    forbidden=without(NO_FAILURE),
    facts=[ike(34, 2), ike(35, 2), *esp_dir(L, R, 250), *esp_dir(R, L, 250),
           fact("fewer than 300 initiator ESP packets arrive", f"esp && ip.src == {L}",
                max=299),
           fact("a DELETE request from each gateway", "isakmp.exchangetype == 37 && "
                "isakmp.flag_r == 0", field="ip.src", values=[L, R]),
           esp_decrypts()],
    verdicts={"main": [V(
        "degraded", "ESP_SEQUENCE_GAP",
        "the router dropped ~4 % of the initiator's ESP (sequence gaps, pings lost) while "
        "ESP flowed both ways for the whole capture; the two simultaneous DELETEs are both "
        "gateways tearing down (not visible, no verdict change)")]},
    pcapvpn_today=("pcapvpn at ee283aa (the lab's branch point) says `192.0.2.2<->198.51.100.2`: "
    "unknown/ESP_SEQUENCE_GAP (expected degraded/ESP_SEQUENCE_GAP); findings: "
    "NAT_ENCAPSULATION_FORCED (i), ESP_SEQUENCE_GAP (w)."),
)
def ikev2_esp_loss_teardown(ctx: Ctx) -> None:
    lc, rc = pairc(ctx, proposals="aes128-sha256-ecp256")
    std(ctx, lc, rc)
    ctx.start_capture()
    ctx.left.initiate()
    ctx.topo.rule(f"ip saddr {L} udp dport 4500 @th,64,32 != 0 numgen random mod 100 < 4 drop")
    ctx.ping(300, interval=0.02)


# =========================================================================== (f)

HTTP_PORT = 8080
DOWNLOAD = 200_000


def _http_server(ctx: Ctx) -> None:
    www = ctx.work / "www"
    www.mkdir(exist_ok=True)
    (www / "file.bin").write_bytes(bytes(range(256)) * (DOWNLOAD // 256))
    ctx.procs.start("http-server", ctx.topo.ns_cmd(
        ctx.topo.right, sys.executable, "-m", "http.server", "--bind", RIGHT_HOST,
        "--directory", str(www), str(HTTP_PORT)), logfile=ctx.work / "http.out")
    ctx.sleep(1)


def _http_get(ctx: Ctx, timeout: float) -> int:
    """Download the file from the left namespace; return the bytes received."""
    code = ("import http.client,sys\n"
            f"c=http.client.HTTPConnection({RIGHT_HOST!r},{HTTP_PORT},timeout={timeout},"
            f"source_address=({LEFT_HOST!r},0))\n"
            "n=0\ntry:\n    c.request('GET','/file.bin'); r=c.getresponse()\n"
            "    while True:\n        b=r.read(4096)\n        if not b: break\n        n+=len(b)\n"
            "except Exception as e: print('error', type(e).__name__, e)\nprint('bytes', n)")
    cp = ctx.topo.sh(ctx.topo.left, sys.executable, "-c", code, check=False,
                     timeout=timeout * 3 + 15)
    n = int(cp.stdout.rsplit("bytes", 1)[-1].strip() or 0) if "bytes" in cp.stdout else 0
    ctx.note(f"HTTP GET http://{RIGHT_HOST}:{HTTP_PORT}/file.bin ({DOWNLOAD} bytes): "
             f"{n} bytes received; {cp.stdout.strip().splitlines()[0] if cp.stdout else ''}")
    return n


@scenario(
    name="ikev2_mtu_black_hole", title="IKEv2 tunnel over a path that silently drops ESP "
    "packets longer than 1200 bytes (MTU black hole)", protocol="ikev2",
    configured="IKE aes128-sha256-ecp256, ESP aes128-sha256; an HTTP server (python "
               "http.server) on the responder's protected address 10.20.1.1:8080 serving a "
               "200 kB file; capture on m-r (the responder's side).",
    fault="the router drops ESP-in-UDP packets whose IP length exceeds 1200 bytes, without "
          "an ICMP error: `ip length > 1200 udp dport 4500 @th,64,32 != 0 drop` (both "
          "directions)",
    shows="IKE_SA_INIT, IKE_AUTH, small pings through ESP both ways (all answered), then an "
          "HTTP download: the TCP handshake and the GET pass, the responder's full-size "
          "segments (~1480-byte ESP-in-UDP packets) are retransmitted again and again and "
          "never acknowledged; the client gets 0 bytes and gives up after 15 s; pings still "
          "pass afterwards.",
    timeout=90,
    keyless=[F("MTU_BLACK_HOLE", "inferred")],
    forbidden=["IKE_NO_RESPONSE", "IKE_NO_PROPOSAL_CHOSEN", "IKE_AUTH_FAILED", "DECODE_ERRORS",
               "NAT_T_BLOCKED", "ESP_ONE_WAY"],
    facts=[ike(34, 2), ike(35, 2),
           fact("large ESP from the responder (dropped after the capture point)",
                f"esp && ip.src == {R} && ip.len > 1200", min=6),
           fact("no large ESP from the initiator", f"esp && ip.src == {L} && ip.len > 1200",
                count=0),
           *esp_dir(L, R, 8, spis=1), *esp_dir(R, L, 8, spis=1),
           fact("retransmitted TCP segments inside the tunnel (decrypted)",
                "tcp.analysis.retransmission && ip.src == 10.20.1.1", min=4, keys=True),
           fact("pings inside the tunnel answered (decrypted)",
                "icmp.type == 0 && ip.src == 10.20.1.1", min=8, keys=True)],
    verdicts={"main": [V(
        "failing", "MTU_BLACK_HOLE",
        "the HTTP download through the tunnel received 0 bytes (events.txt): every full-size "
        "ESP packet was dropped on the path without an ICMP error while small pings passed; "
        "at the end of the capture the tunnel cannot carry the traffic it is used for",
        stage="dataplane")]},
    pcapvpn_today=("pcapvpn at ee283aa (the lab's branch point) says `192.0.2.2<->198.51.100.2`: healthy"
    " (expected failing/MTU_BLACK_HOLE); findings: NAT_ENCAPSULATION_FORCED (i)."),
)
def ikev2_mtu_black_hole(ctx: Ctx) -> None:
    lc, rc = pairc(ctx, proposals="aes128-sha256-ecp256")
    std(ctx, lc, rc)
    _http_server(ctx)
    ctx.topo.rule("ip length > 1200 udp dport 4500 @th,64,32 != 0 drop")
    ctx.start_capture()
    ctx.left.initiate()
    ctx.ping(5, check=True)
    got = _http_get(ctx, timeout=15)
    if got >= DOWNLOAD:
        raise RuntimeError("the download passed the black hole")
    ctx.ping(5, check=True)


# =========================================================================== (g)

@scenario(
    name="ikev1_dpd_healthy", title="IKEv1 with DPD on a healthy tunnel (R_U_THERE / "
    "R_U_THERE_ACK), both gateways tear down at the end", protocol="ikev1",
    configured="IKEv1 Main Mode PSK aes128-sha256-modp2048, Quick Mode ESP aes128-sha256, DPD "
               "every 5 s on both gateways (`dpd_delay = 5s`, RFC 3706); pings, ~12 s idle, "
               "pings; at the end both charons get SIGTERM at the same moment.",
    fault="none",
    shows="Main Mode, Quick Mode, ESP both ways; during the idle period encrypted "
          "Informational exchanges: R_U_THERE answered by R_U_THERE_ACK (visible with the "
          "keys); more ESP; at the end an Informational DELETE from each gateway (IKEv1 "
          "DELETEs are not acknowledged).",
    timeout=60, teardown="both",
    keyless=[F("NAT_ENCAPSULATION_FORCED", "inferred")],
    forbidden=NO_FAILURE + ["IKE_AGGRESSIVE_MODE_PSK"],
    facts=[ike(2, 6), ike(32, 3), *esp_dir(L, R, 6), *esp_dir(R, L, 6), esp_decrypts(),
           ike(5, min=4),
           fact("R_U_THERE (decrypted)", "isakmp.exchangetype == 5 && "
                "isakmp.notify.msgtype == 36136", min=1, keys=True),
           fact("R_U_THERE_ACK (decrypted)", "isakmp.exchangetype == 5 && "
                "isakmp.notify.msgtype == 36137", min=1, keys=True),
           fact("DELETEs from both gateways (decrypted)", "isakmp.exchangetype == 5 && "
                "isakmp.delete.protoid", field="ip.src", values=[L, R], keys=True)],
    verdicts={"main": [V(
        "healthy", None,
        "both charons log every DPD R_U_THERE answered (R_U_THERE_ACK) and ESP flowed both "
        "ways; the DELETEs at the end are both gateways shutting down")]},
    pcapvpn_today=("pcapvpn at ee283aa (the lab's branch point) says `192.0.2.2<->198.51.100.2`: healthy"
    " (expected healthy); findings: NAT_ENCAPSULATION_FORCED (i); it agrees with the "
    "expected verdict."),
)
def ikev1_dpd_healthy(ctx: Ctx) -> None:
    lc, rc = pairc(ctx, version=1, secret_ids=False, esp="aes128-sha256",
                   conn_extra={"dpd_delay": "5s"})
    std(ctx, lc, rc)
    ctx.start_capture()
    ctx.left.initiate()
    ctx.ping(3, check=True)
    ctx.sleep(13)
    ctx.ping(3, check=True)


# =========================================================================== (h)

@scenario(
    name="ikev2_childless", title="IKEv2 childless IKE SA (RFC 6023), strongSwan on both "
    "sides, healthy", protocol="ikev2",
    configured="IKE aes128-sha256-ecp256, PSK; the initiator has `childless = force` and "
               "initiates the IKE SA only (`swanctl --initiate --ike lab`); the responder "
               "allows childless IKE SAs (the default). No traffic is sent.",
    fault="none",
    shows="IKE_SA_INIT (the response carries CHILDLESS_IKEV2_SUPPORTED), IKE_AUTH on 4500 "
          "without SA/TS payloads, ~5 s idle, the DELETE exchange.",
    timeout=60,
    keyless=[],
    forbidden=NO_FAILURE + ["ESP_NO_TRAFFIC", "CHILD_SA_FAILED"],
    facts=[ike(34, 2), ike(35, 2), fact("no ESP", "esp", count=0),
           fact("the responder announces CHILDLESS_IKEV2_SUPPORTED",
                "isakmp.exchangetype == 34 && isakmp.flag_r == 1 && "
                "isakmp.notify.msgtype == 16418", count=1),
           fact("IKE_AUTH carries no traffic selectors (decrypted)",
                "isakmp.exchangetype == 35 && isakmp.ts.type", count=0, keys=True),
           ike_decrypts()],
    verdicts={"main": [V(
        "healthy", None,
        "both charons log the IKE SA established and no CHILD_SA (childless = force): no "
        "child SA was negotiated, so no ESP is expected")]},
    pcapvpn_today=("pcapvpn at ee283aa (the lab's branch point) says `192.0.2.2<->198.51.100.2`: unknown"
    " (expected healthy); findings: NAT_ENCAPSULATION_FORCED (i)."),
)
def ikev2_childless(ctx: Ctx) -> None:
    lc, rc = pairc(ctx, proposals="aes128-sha256-ecp256", left={"conn_extra": {"childless":
                                                                              "force"}})
    std(ctx, lc, rc)
    ctx.start_capture()
    ctx.left.swanctl("--initiate", "--ike", "lab", "--timeout", "10", timeout=20)
    ctx.sleep(5)


# =========================================================================== (i)

@scenario(
    name="ikev1_aggressive_qm_unanswered", title="IKEv1 Aggressive Mode succeeds, Quick Mode "
    "never answered", protocol="ikev1",
    configured="IKEv1 Aggressive Mode PSK aes128-sha256-modp2048 (responder allows aggressive "
               "PSK), Quick Mode ESP aes128-sha256; initiator `retransmit_tries = 4`; capture "
               "on the initiator's side (m-l); the daemons are stopped 17.5 s after the "
               "initiation, before the initiator gives up.",
    fault="the router drops the initiator's Quick Mode messages (`ip saddr 192.0.2.2 udp "
          "dport 4500 @th,240,8 32 drop`: exchange type 32 after the non-ESP marker)",
    shows="Aggressive Mode (3 messages; the third on 4500), then Quick Mode 1 sent 5 times "
          "(0, 2, 5, 9.5, 16.25 s) without any answer; nothing from the responder after "
          "Aggressive Mode 2; the initiator's Informational DELETEs when it is stopped.",
    capture="m-l", timeout=60,
    keyless=[F("CHILD_SA_FAILED", "inferred"), F("IKE_AGGRESSIVE_MODE_PSK")],
    forbidden=["IKE_NO_PROPOSAL_CHOSEN", "IKE_AUTH_FAILED", "DECODE_ERRORS", "ESP_ONE_WAY"],
    facts=[ike(4, 3), ike(32, min=5), fact("no Quick Mode from the responder",
                                           f"isakmp.exchangetype == 32 && ip.src == {R}",
                                           count=0),
           fact("nothing from the responder after Aggressive Mode",
                f"isakmp.exchangetype == 5 && ip.src == {R}", count=0),
           fact("no ESP", "esp", count=0)],
    verdicts={"main": [V(
        "failing", "CHILD_SA_FAILED",
        "Aggressive Mode completed, but the initiator's Quick Mode 1 was never answered (its "
        "charon logs the retransmits and gives up): no child SA, no ESP", stage="child_sa")]},
    pcapvpn_today=("pcapvpn at ee283aa (the lab's branch point) says `192.0.2.2<->198.51.100.2`: "
    "failing/NAT_T_BLOCKED (expected failing/CHILD_SA_FAILED); findings: NAT_T_BLOCKED "
    "(e), IKE_AGGRESSIVE_MODE_PSK (w), NAT_ENCAPSULATION_FORCED (i), CHILD_SA_FAILED (e)."),
)
def ikev1_aggressive_qm_unanswered(ctx: Ctx) -> None:
    lc, rc = pairc(ctx, version=1, esp="aes128-sha256", conn_extra={"aggressive": "yes"})
    std(ctx, lc, rc, ls={"charon": {"retransmit_tries": 4}},
        rs={"charon": {"i_dont_care_about_security_and_use_aggressive_mode_psk": "yes"}})
    ctx.topo.rule(f"ip saddr {L} udp dport 4500 @th,240,8 32 drop")
    ctx.start_capture()
    ctx.left.initiate_bg(timeout=40)
    # Quick Mode 1 at 0 s, retransmitted at 2, 5, 9.5 and 16.25 s; stop before charon gives
    # up (after giving up, IKEv1 charon starts a new Aggressive Mode at once)
    ctx.sleep(17.5)


# =========================================================================== orderly sessions

@scenario(
    name="ikev2_three_sessions", title="IKEv2: three short sessions, each closed by an answered "
    "DELETE (orderly teardowns, not flapping)", protocol="ikev2",
    configured="IKE aes128-sha256-ecp256, ESP aes128-sha256; the initiator brings the tunnel "
               "up, pings 3 times and closes it (`swanctl --terminate`), three times in a row.",
    fault="none",
    shows="Three IKE SAs one after the other (IKE_SA_INIT, IKE_AUTH, ESP both ways), each "
          "ended by the initiator's DELETE INFORMATIONAL, answered by the responder.",
    timeout=90,
    keyless=[],
    forbidden=NO_FAILURE + ["IKE_SA_FLAPPING", "IKE_RETRANSMISSION"],
    facts=[ike(34, 6), ike(35, 6),
           fact("three IKE SAs", "isakmp.exchangetype == 34", field="isakmp.ispi", distinct=3),
           ike(37, 3, resp=False), ike(37, 3, resp=True),
           fact("each INFORMATIONAL request is a DELETE of the IKE SA (decrypted)",
                "isakmp.exchangetype == 37 && isakmp.flag_r == 0 && isakmp.delete.protoid == 1",
                count=3, keys=True),
           *esp_dir(L, R, 9, spis=3), *esp_dir(R, L, 9, spis=3), esp_decrypts()],
    verdicts={"main": [V(
        "healthy", None,
        "the initiator opened and closed the tunnel three times on purpose; every IKE SA was "
        "established, carried answered pings and ended with an answered DELETE")]},
    pcapvpn_today=("pcapvpn at ee283aa (the lab's branch point) says `192.0.2.2<->198.51.100.2`: "
    "degraded/IKE_SA_FLAPPING (expected healthy); findings: NAT_ENCAPSULATION_FORCED (i),"
    " IKE_SA_FLAPPING (w)."),
)
def ikev2_three_sessions(ctx: Ctx) -> None:
    lc, rc = pairc(ctx, proposals="aes128-sha256-ecp256")
    std(ctx, lc, rc)
    ctx.start_capture()
    for i in range(3):
        ctx.left.initiate()
        ctx.ping(3, check=True)
        ctx.left.swanctl("--terminate", "--ike", "lab", "--timeout", "5", timeout=15)
        ctx.note(f"session {i + 1} closed by the initiator")
        ctx.sleep(1)
