"""Inside the tunnel (issue 15): "the VPN is up but the LAN is unreachable".

An office LAN behind the responder (namespace ``<p>-lan``: internal host 10.20.5.10 with a web
server and dnsmasq DNS for ``corp.lab``), the tunnel 10.10.1.0/24 <-> 10.20.0.0/16, and three
views of the same traffic besides the router's outer capture (the main one, with keys):

- ``<name>-client-any.pcap``: ``tcpdump -i any`` on the client (Linux cooked v2: l-eth0 with
  IKE/ESP-in-UDP, ``ipsec0`` (kernel-libipsec's TUN device) with the plaintext);
- ``<name>-client.pcapng``: dumpcap on the client's ``l-eth0`` and ``ipsec0`` (one IDB each:
  Ethernet and raw IP);
- ``<name>-gw-any.pcap``: ``tcpdump -i any`` on the responder (r-eth0 with ESP, its own
  ``ipsec0``, and the LAN side ``r-lan``: the decrypted traffic towards the internal host and its
  replies);
- ``<name>-gw-lan.pcap`` (not a capture entry of expected.json: it holds no tunnel on its own):
  tcpdump on ``r-lan`` alone, the LAN-side capture an engineer takes on a switch port, tied to
  the tunnel by timing when analysed together with the outer capture (tests/track/test_inner.py).

Registered into :data:`vpnlab.scenarios.SCENARIOS` on import.
"""

from __future__ import annotations

import sys
import time

from .lab import Ctx
from .net import LEFT_HOST, RIGHT_HOST
from .proc import wait_for
from .scenarios import F, V, pairc, scenario, std

LAN_NET = "10.20.5.0/24"
LAN_GW = "10.20.5.1"
LAN_HOST = "10.20.5.10"
REMOTE_TS = "10.20.0.0/16"
DOMAIN = "corp.lab"
NAME = f"intranet.{DOMAIN}"
HOME_ADDR = "10.20.5.100"  # subnet overlap: the client's home LAN is the office LAN's subnet
ROUTER_LAN_DROP = "ip daddr 10.0.0.0/8 drop"  # the Internet does not route private addresses

#: the client and gateway views, beside the main (router) capture
VIEWS = (("client-any", "client `tcpdump -i any` (Linux cooked v2: l-eth0 + ipsec0)"),
         ("client", "client dumpcap on l-eth0 and ipsec0 (pcapng, one IDB each)"),
         ("gw-any", "responder `tcpdump -i any` (r-eth0 + ipsec0 + the LAN side r-lan)"))

_DNS_CLIENT = r"""
import socket, struct, sys, time
server, name, tries, wait = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
q = struct.pack(">HHHHHH", 0x1500 + len(name), 0x0100, 1, 0, 0, 0)
for label in name.split("."):
    q += bytes([len(label)]) + label.encode()
q += b"\0" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(wait)
for i in range(tries):
    s.sendto(q, (server, 53))
    try:
        data = s.recv(2048)
        print("rcode", data[3] & 15, "answers", struct.unpack(">H", data[6:8])[0])
        break
    except (socket.timeout, ConnectionRefusedError, OSError) as e:
        print("no answer", type(e).__name__)
"""

# http.server without its reverse lookup of the bind address (HTTPServer.server_bind calls
# socket.getfqdn, which would send a DNS query to the host's resolver)
_WEB_SERVER = r"""
import functools, http.server, socketserver, sys
class Server(http.server.ThreadingHTTPServer):
    def server_bind(self):
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "intranet", 80
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[2])
srv = Server((sys.argv[1], 80), handler)
print("Serving HTTP on", sys.argv[1], flush=True)
srv.serve_forever()
"""

_HTTP_CLIENT = r"""
import socket, sys
host, port, path, wait = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
s = socket.socket()
s.settimeout(wait)
try:
    s.connect((host, port))
    s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
    n = 0
    while True:
        b = s.recv(65536)
        if not b:
            break
        n += len(b)
    print("received", n)
except OSError as e:
    print("failed", type(e).__name__, e)
"""


def _sh(ctx: Ctx, ns: str, *cmd: str, **kw):
    return ctx.topo.sh(ns, *cmd, **kw)


def lan_up(ctx: Ctx, *, return_route: bool = True) -> str:
    """The office LAN behind the responder: namespace, veth, internal host, web + DNS."""
    topo = ctx.topo
    lan = f"{topo.prefix}-lan"
    from .proc import run
    run(["ip", "netns", "add", lan])
    topo.namespaces.append(lan)
    _sh(ctx, lan, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
        "net.ipv6.conf.default.disable_ipv6=1")
    run(["ip", "-n", lan, "link", "set", "lo", "up"])
    run(["ip", "-n", topo.right, "link", "add", "r-lan", "type", "veth", "peer", "name",
         "lan-eth0", "netns", lan])
    for ns, dev, addr in ((topo.right, "r-lan", f"{LAN_GW}/24"),
                          (lan, "lan-eth0", f"{LAN_HOST}/24")):
        for flag in ("tx", "rx", "tso", "gso", "gro"):
            _sh(ctx, ns, "ethtool", "-K", dev, flag, "off", check=False)
        run(["ip", "-n", ns, "addr", "add", addr, "dev", dev])
        run(["ip", "-n", ns, "link", "set", dev, "up"])
    _sh(ctx, topo.right, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    # the internal host sends at 20 Mbit/s: the captures of a download keep up (tbf)
    _sh(ctx, lan, "tc", "qdisc", "replace", "dev", "lan-eth0", "root", "tbf", "rate", "20mbit",
        "burst", "32kbit", "latency", "400ms")
    if return_route:
        run(["ip", "-n", lan, "route", "add", "default", "via", LAN_GW])
    # web server with a 300 kB file, dnsmasq answering corp.lab (unknown names: NXDOMAIN)
    www = ctx.work / "www"
    www.mkdir(exist_ok=True)
    (www / "big.bin").write_bytes(bytes(range(256)) * 400)
    (www / "index.html").write_text("<html><body>intranet</body></html>\n")
    weblog = ctx.work / "web.log"
    ctx.procs.start("web", topo.ns_cmd(lan, sys.executable, "-u", "-c", _WEB_SERVER, LAN_HOST,
                                       str(www)), logfile=weblog)
    wait_for(lambda: weblog.exists() and "Serving HTTP" in weblog.read_text(errors="replace"),
             10, what="web server")
    dns = ctx.procs.start("dnsmasq", topo.ns_cmd(
        lan, "dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces",
        f"--listen-address={LAN_HOST}", "--except-interface=lo", f"--local=/{DOMAIN}/",
        f"--address=/{NAME}/{LAN_HOST}", "--log-queries", "--user=root",
        f"--pid-file={ctx.work / 'dnsmasq.pid'}"), logfile=ctx.work / "dnsmasq.log")
    ctx.lan_dns = dns
    wait_for(lambda: "started" in (ctx.work / "dnsmasq.log").read_text(errors="replace")
             if (ctx.work / "dnsmasq.log").exists() else False, 10, what="dnsmasq")
    ctx.note(f"office LAN up: {LAN_HOST} (web :80, DNS for {DOMAIN})"
             + ("" if return_route else "; the internal host has NO route back"))
    return lan


def start_views(ctx: Ctx, lan: str) -> None:
    """The client views (tcpdump -i any, dumpcap on l-eth0 + ipsec0) and the gateway's LAN
    side; after charon created ipsec0, before IKE starts."""
    topo = ctx.topo
    name = ctx.sc.name
    wait_for(lambda: _sh(ctx, topo.left, "ip", "link", "show", "ipsec0",
                         check=False).returncode == 0, 10, what="ipsec0")
    p = ctx.work / f"{name}-client-any.pcap"
    ctx.captures.append(("any", topo.capture("any", p, topo.left, buffer_kib=32768), p))
    p = ctx.work / f"{name}-gw-lan.pcap"
    ctx.captures.append(("r-lan", topo.capture("r-lan", p, topo.right, buffer_kib=32768), p))
    p = ctx.work / f"{name}-gw-any.pcap"
    ctx.captures.append(("gw-any", topo.capture("any", p, topo.right, buffer_kib=32768), p))
    p = ctx.work / f"{name}-client.pcapng"
    log = ctx.work / "dumpcap.log"
    proc = ctx.procs.start("dumpcap", topo.ns_cmd(topo.left, "dumpcap", "-B", "32", "-i",
                                                 "l-eth0", "-i", "ipsec0", "-w", str(p)),
                           logfile=log)
    ctx.dumpcap = proc
    wait_for(lambda: log.exists() and "File:" in log.read_text(errors="replace"), 10,
             what="dumpcap")
    ctx.captures.append(("l-eth0+ipsec0", proc, p))
    ctx.start_capture()
    time.sleep(0.3)


def finish_views(ctx: Ctx, wait: float = 7.0) -> None:
    """Let unanswered requests age past pcapvpn's answer timeout, then stop dumpcap before the
    daemons (it exits on its own when ipsec0 disappears with charon)."""
    ctx.sleep(wait)
    # a last answered ping: the captures' last packet shows the time that passed (a capture
    # ends, for the analysis, at its last packet)
    ctx.ping(1, dst=RIGHT_HOST)
    ctx.sleep(0.5)
    ctx.topo.stop_capture(ctx.dumpcap)
    ctx.note("client dumpcap stopped")


def tunnel(ctx: Ctx, *, return_route: bool = True) -> str:
    lan = lan_up(ctx, return_route=return_route)
    lc, rc = pairc(ctx, local_ts=None, left={"remote_ts": REMOTE_TS},
                   right={"local_ts": REMOTE_TS})
    std(ctx, lc, rc)
    start_views(ctx, lan)
    ctx.left.initiate()
    ctx.note("tunnel up (10.10.1.0/24 <-> 10.20.0.0/16)")
    return lan


def dns(ctx: Ctx, name: str = NAME, server: str = LAN_HOST, tries: int = 1,
        wait: float = 2.0) -> str:
    cp = _sh(ctx, ctx.topo.left, sys.executable, "-c", _DNS_CLIENT, server, name, str(tries),
             str(wait), timeout=tries * wait + 15, check=False)
    out = cp.stdout.strip().replace("\n", "; ")
    ctx.note(f"DNS {name} @{server}: {out}")
    return out


def http(ctx: Ctx, path: str = "/big.bin", host: str = LAN_HOST, port: int = 80,
         wait: float = 10.0) -> str:
    cp = _sh(ctx, ctx.topo.left, sys.executable, "-c", _HTTP_CLIENT, host, str(port), path,
             str(wait), timeout=wait + 20, check=False)
    out = cp.stdout.strip()
    ctx.note(f"HTTP GET http://{host}:{port}{path}: {out}")
    return out


def narrow_routes(ctx: Ctx, *nets: str) -> None:
    """Emulate a client that installs its VPN routes in the main table (Windows, OpenVPN,
    NetworkManager): table 220 flushed, ``nets`` routed into ipsec0."""
    topo = ctx.topo
    _sh(ctx, topo.left, "ip", "route", "flush", "table", "220")
    for n in nets:
        _sh(ctx, topo.left, "ip", "route", "add", n, "dev", "ipsec0", "src", LEFT_HOST)
    ctx.note("client routes: " + ", ".join(nets) + " into ipsec0 (table 220 flushed)")


def view_file(name: str, suffix: str) -> str:
    return f"{name}-{suffix}.{'pcapng' if suffix == 'client' else 'pcap'}"


def _common(**kw) -> dict:
    """Scenario fields shared by the inner scenarios: the three views as capture entries, the
    expected findings' ``capture`` given as a view's suffix."""
    kw.setdefault("protocol", "ikev2")
    kw.setdefault("capture", "m-r")
    kw.setdefault("timeout", 120)
    name = kw["name"]
    kw.setdefault("views", [{"file": view_file(name, suffix), "interface": suffix, "view": desc}
                            for suffix, desc in VIEWS])
    for f in kw.get("keyless", []):
        if f.get("capture") in {v for v, _d in VIEWS}:
            f["capture"] = view_file(name, f["capture"])
    return kw


BASE = ("IKEv2 PSK (aes128-sha256-modp2048, ESP aes128-sha256), tunnel 10.10.1.0/24 <-> "
        "10.20.0.0/16; office LAN 10.20.5.0/24 behind the responder (internal host 10.20.5.10: "
        "python http.server on 80 with a 100 kB file, dnsmasq for corp.lab: intranet.corp.lab "
        "-> 10.20.5.10, other corp.lab names NXDOMAIN); captures: router m-r (outer, keys), "
        "client -i any, client dumpcap l-eth0 + ipsec0, responder r-lan")


@scenario(**_common(
    name="inner_healthy", title="Inside the tunnel: pings, DNS and an HTTP download to the "
    "office LAN all work (baseline for the inner views)",
    configured=BASE + ".",
    fault="none",
    shows="The tunnel comes up; the client (10.10.1.1) pings the internal host 5 times, resolves "
          "intranet.corp.lab through the tunnel and downloads 100 kB over HTTP; every request is "
          "answered. The client views show the plaintext on ipsec0 and ESP on l-eth0; the "
          "gateway's LAN side shows the same conversations decrypted.",
    forbidden=["ROUTE_OUTSIDE_TUNNEL", "INNER_NO_RETURN", "DNS_NO_ANSWER", "DNS_ERROR",
               "DNS_OUTSIDE_TUNNEL", "INNER_BLOCKED", "SUBNET_OVERLAP", "INNER_MTU",
               "INNER_NO_ANSWER", "ESP_ONE_WAY"],
    verdicts={"all": [V("healthy", None, "pings, DNS and the HTTP download through the tunnel "
                        "were all answered (ping/DNS/HTTP client output in events.txt)")]},
))
def inner_healthy(ctx: Ctx) -> None:
    tunnel(ctx)
    ctx.ping(5, interval=0.2, dst=LAN_HOST, check=True)
    dns(ctx)
    http(ctx)
    finish_views(ctx, 2)


@scenario(**_common(
    name="inner_route_outside", title="Split tunnel too narrow: traffic for the office LAN "
    "leaves the client in clear on its physical interface",
    configured=BASE + "; the client routes only 10.20.1.0/24 into ipsec0 (main table; table 220 "
               "flushed), so 10.20.5.0/24 follows the default route; the router drops private "
               "destinations (as the Internet does).",
    fault=f"client route for the office LAN missing (only 10.20.1.0/24 into the tunnel); router "
          f"`{ROUTER_LAN_DROP}`",
    shows="Pings to 10.20.1.1 (the responder's protected address) go through the tunnel and are "
          "answered; pings and an HTTP connection to 10.20.5.10 leave l-eth0 in clear from "
          "192.0.2.2 and get no answer. The gateway's LAN side sees nothing of them.",
    keyless=[F("ROUTE_OUTSIDE_TUNNEL", capture="client-any"),
             F("ROUTE_OUTSIDE_TUNNEL", capture="client")],
    forbidden=["INNER_NO_RETURN", "DNS_ERROR", "INNER_BLOCKED", "SUBNET_OVERLAP", "INNER_MTU"],
    verdicts={"client-any": [V("failing", "ROUTE_OUTSIDE_TUNNEL",
                               "the client's route for 10.20.5.0/24 is missing: its packets to "
                               "the internal host leave in clear and nothing answers",
                               stage="routing")],
              "client": [V("failing", "ROUTE_OUTSIDE_TUNNEL",
                           "the client's route for 10.20.5.0/24 is missing: its packets to the "
                           "internal host leave in clear and nothing answers",
                           stage="routing")],
              "main": [V("healthy", None, "the outer view shows only the working part: pings "
                         "to 10.20.1.1 through ESP both ways (the bypassing packets never reach "
                         "the responder's side of the router)")],
              "gw-any": [V("healthy", None, "the responder sees only the working part: pings to "
                           "10.20.1.1 through the tunnel (the bypassing packets are dropped "
                           "before they reach it)")]},
))
def inner_route_outside(ctx: Ctx) -> None:
    tunnel(ctx)
    ctx.topo.rule(ROUTER_LAN_DROP)
    narrow_routes(ctx, "10.20.1.0/24")
    ctx.ping(5, interval=0.2, dst=RIGHT_HOST, check=True)
    ctx.ping(4, interval=0.3, src=None, dst=LAN_HOST)
    http(ctx, "/index.html", wait=4)
    ctx.ping(3, interval=0.2, dst=RIGHT_HOST, check=True)
    finish_views(ctx)


@scenario(**_common(
    name="inner_no_return", title="No return route on the office LAN: requests reach the "
    "internal host through the tunnel, no reply ever comes back",
    configured=BASE + "; the internal host has no default route (only its connected "
               "10.20.5.0/24), so it cannot answer 10.10.1.0/24.",
    fault="the internal host has no route back to the VPN clients",
    shows="Pings to 10.20.1.1 work through the tunnel; pings, a DNS query and an HTTP "
          "connection (SYN retransmitted) to 10.20.5.10 enter the tunnel, reach the LAN side "
          "decrypted, and are never answered.",
    keyless=[F("INNER_NO_RETURN", capture="client-any"), F("INNER_NO_RETURN", capture="client"),
             F("INNER_NO_RETURN", capture="gw-any")],
    with_keys=[F("INNER_NO_RETURN", "decrypted")],
    forbidden=["ROUTE_OUTSIDE_TUNNEL", "INNER_BLOCKED", "SUBNET_OVERLAP", "INNER_MTU",
               "ESP_ONE_WAY"],
    verdicts={"all": [V("failing", "INNER_NO_RETURN",
                        "the internal host has no route back: requests through the tunnel reach "
                        "the LAN and nothing returns", stage="routing")],
              "main": [V("healthy", None, "without keys the outer view shows ESP both ways "
                         "(the pings to 10.20.1.1 are answered); what is inside cannot be seen")]},
    verdicts_with_keys={"main": [V("failing", "INNER_NO_RETURN",
                                   "decrypted: requests to 10.20.5.10 get no reply",
                                   stage="routing")]},
))
def inner_no_return(ctx: Ctx) -> None:
    tunnel(ctx, return_route=False)
    ctx.ping(3, interval=0.2, dst=RIGHT_HOST, check=True)
    ctx.ping(4, interval=0.3, dst=LAN_HOST)
    dns(ctx, tries=2)
    http(ctx, "/index.html", wait=5)
    ctx.ping(3, interval=0.2, dst=RIGHT_HOST, check=True)
    finish_views(ctx)


@scenario(**_common(
    name="inner_dns_no_answer", title="Internal DNS server hangs: queries for internal names "
    "through the tunnel get no answer",
    configured=BASE + "; dnsmasq is stopped with SIGSTOP after the tunnel is up (its socket "
               "stays bound: no ICMP).",
    fault="the internal DNS server does not answer (SIGSTOP)",
    shows="Pings and an HTTP download to 10.20.5.10 work; DNS queries for intranet.corp.lab "
          "(retried) through the tunnel are never answered; the gateway's LAN side sees them "
          "reach the server.",
    keyless=[F("DNS_NO_ANSWER", capture="client-any"), F("DNS_NO_ANSWER", capture="client"),
             F("DNS_NO_ANSWER", capture="gw-any")],
    with_keys=[F("DNS_NO_ANSWER", "decrypted")],
    forbidden=["ROUTE_OUTSIDE_TUNNEL", "INNER_NO_RETURN", "INNER_BLOCKED", "SUBNET_OVERLAP",
               "INNER_MTU", "DNS_OUTSIDE_TUNNEL"],
    verdicts={"all": [V("failing", "DNS_NO_ANSWER", "dnsmasq was stopped: no query for an "
                        "internal name was answered", stage="inner")],
              "main": [V("healthy", None, "without keys the outer view shows ESP both ways")]},
    verdicts_with_keys={"main": [V("failing", "DNS_NO_ANSWER", "decrypted: the DNS queries "
                                   "get no answer", stage="inner")]},
))
def inner_dns_no_answer(ctx: Ctx) -> None:
    tunnel(ctx)
    import os
    import signal
    os.kill(ctx.lan_dns.pid, signal.SIGSTOP)
    ctx.note("dnsmasq stopped (SIGSTOP)")
    ctx.ping(3, interval=0.2, dst=LAN_HOST, check=True)
    dns(ctx, tries=3, wait=2)
    http(ctx, "/index.html")
    finish_views(ctx)
    # killed while stopped: a SIGCONT would let it answer the queued queries at the end
    os.kill(ctx.lan_dns.pid, signal.SIGKILL)


@scenario(**_common(
    name="inner_dns_error", title="Internal name does not exist: NXDOMAIN from the internal DNS "
    "server, and an internal name asked of a resolver outside the tunnel",
    configured=BASE + ".",
    fault="the client asks for wiki.corp.lab (not in the zone: NXDOMAIN) through the tunnel, "
          "and asks a resolver outside the tunnel (192.0.2.1, the client's local router, which "
          "runs no DNS: ICMP port unreachable) for intranet.corp.lab",
    shows="intranet.corp.lab resolves through the tunnel; wiki.corp.lab gets NXDOMAIN (asked "
          "twice, as wiki.corp.lab and wiki.corp.lab.corp.lab: a search-list expansion, also "
          "NXDOMAIN); the query for intranet.corp.lab sent to 192.0.2.1 on l-eth0 draws ICMP "
          "port unreachable.",
    keyless=[F("DNS_ERROR", capture="client-any"), F("DNS_ERROR", capture="client"),
             F("DNS_ERROR", capture="gw-any"), F("DNS_OUTSIDE_TUNNEL", capture="client-any"),
             F("DNS_OUTSIDE_TUNNEL", capture="client")],
    with_keys=[F("DNS_ERROR", "decrypted")],
    forbidden=["ROUTE_OUTSIDE_TUNNEL", "INNER_NO_RETURN", "INNER_BLOCKED", "SUBNET_OVERLAP",
               "INNER_MTU", "DNS_NO_ANSWER"],
    verdicts={"all": [V("degraded", "DNS_ERROR", "wiki.corp.lab does not exist on the internal "
                        "server (NXDOMAIN) while other internal names resolve")],
              "main": [V("healthy", None, "without keys the outer view shows ESP both ways")]},
    verdicts_with_keys={"main": [V("degraded", "DNS_ERROR", "decrypted: NXDOMAIN for "
                                   "wiki.corp.lab")]},
))
def inner_dns_error(ctx: Ctx) -> None:
    tunnel(ctx)
    ctx.ping(3, interval=0.2, dst=LAN_HOST, check=True)
    dns(ctx)
    dns(ctx, f"wiki.{DOMAIN}")
    dns(ctx, f"wiki.{DOMAIN}.{DOMAIN}")
    dns(ctx, NAME, server="192.0.2.1", wait=1)
    finish_views(ctx)


@scenario(**_common(
    name="inner_blocked", title="An internal firewall refuses the VPN users on some services: "
    "ICMP administratively prohibited from the gateway, a closed port (RST) on the host",
    configured=BASE + "; the responder's forward chain rejects TCP 8080 to the LAN with ICMP "
               "admin-prohibited; nothing listens on TCP 81.",
    fault="`tcp dport 8080 reject with icmp type admin-prohibited` on the responder (forward); "
          "port 81 closed on the internal host",
    shows="Pings and HTTP on 80 to 10.20.5.10 work; a connection to 8080 is refused by the "
          "responder with ICMP type 3 code 13; one to 81 gets a RST from the host.",
    keyless=[F("INNER_BLOCKED", capture="client-any"), F("INNER_BLOCKED", capture="client"),
             F("INNER_BLOCKED", capture="gw-any")],
    with_keys=[F("INNER_BLOCKED", "decrypted")],
    forbidden=["ROUTE_OUTSIDE_TUNNEL", "INNER_NO_RETURN", "SUBNET_OVERLAP", "INNER_MTU",
               "DNS_NO_ANSWER", "DNS_ERROR"],
    verdicts={"all": [V("degraded", "INNER_BLOCKED", "two services of the internal host are "
                        "refused (a filter on the gateway, a closed port) while ping and HTTP "
                        "work")],
              "main": [V("healthy", None, "without keys the outer view shows ESP both ways")]},
    verdicts_with_keys={"main": [V("degraded", "INNER_BLOCKED", "decrypted: ICMP "
                                   "admin-prohibited and a RST inside the tunnel")]},
))
def inner_blocked(ctx: Ctx) -> None:
    tunnel(ctx)
    _sh(ctx, ctx.topo.right, "nft", "-f", "-", input=(
        "table inet gwfilter {\n chain gwfwd {\n  type filter hook forward priority 0; policy accept;\n"
        f"  ip daddr {LAN_NET} tcp dport 8080 reject with icmp type admin-prohibited\n"
        " }\n}\n"))
    ctx.note("responder: tcp dport 8080 to the LAN rejected (icmp admin-prohibited)")
    ctx.ping(3, interval=0.2, dst=LAN_HOST, check=True)
    http(ctx, "/index.html")
    http(ctx, "/", port=8080, wait=4)
    http(ctx, "/", port=81, wait=4)
    finish_views(ctx)


@scenario(**_common(
    name="inner_subnet_overlap", title="The client's home LAN uses the office LAN's subnet: "
    "traffic for the office host stays on the home LAN (ARP unanswered)",
    configured=BASE + "; the client has a second interface home0 with 10.20.5.100/24 (its home "
               "LAN, no other host on it) and its VPN route 10.20.0.0/16 into ipsec0 in the main "
               "table (table 220 flushed): the connected home route wins for 10.20.5.0/24.",
    fault="home LAN 10.20.5.0/24 = office LAN 10.20.5.0/24",
    shows="Pings to 10.20.1.1 work through the tunnel; pings and an HTTP connection to "
          "10.20.5.10 make the client ARP for 10.20.5.10 on home0, unanswered; nothing reaches "
          "the tunnel or the office LAN.",
    keyless=[F("SUBNET_OVERLAP", capture="client-any")],
    forbidden=["INNER_NO_RETURN", "INNER_BLOCKED", "INNER_MTU", "DNS_ERROR"],
    verdicts={"client-any": [V("failing", "SUBNET_OVERLAP",
                               "the home LAN 10.20.5.0/24 hides the office LAN: the client ARPs "
                               "for 10.20.5.10 locally", stage="routing")],
              "main": [V("healthy", None, "the outer view shows only the working pings to "
                         "10.20.1.1")],
              "gw-any": [V("healthy", None, "the responder sees only the working pings to "
                           "10.20.1.1: the traffic for 10.20.5.10 never left the client's home "
                           "LAN")],
              "client": [V("healthy", None, "dumpcap ran on l-eth0 and ipsec0 only: the "
                           "home LAN, where the traffic went, was not captured")]},
))
def inner_subnet_overlap(ctx: Ctx) -> None:
    topo = ctx.topo
    from .proc import run
    home = f"{topo.prefix}-home"
    run(["ip", "netns", "add", home])
    topo.namespaces.append(home)
    run(["ip", "-n", topo.left, "link", "add", "home0", "type", "veth", "peer", "name",
         "home-eth0", "netns", home])
    run(["ip", "-n", topo.left, "addr", "add", f"{HOME_ADDR}/24", "dev", "home0"])
    run(["ip", "-n", topo.left, "link", "set", "home0", "up"])
    run(["ip", "-n", home, "link", "set", "home-eth0", "up"])
    ctx.note(f"client home LAN: home0 {HOME_ADDR}/24 (nobody else on it)")
    tunnel(ctx)
    narrow_routes(ctx, REMOTE_TS)
    ctx.ping(3, interval=0.2, dst=RIGHT_HOST, check=True)
    ctx.ping(4, interval=0.3, src=None, dst=LAN_HOST)
    http(ctx, "/index.html", wait=4)
    ctx.ping(3, interval=0.2, dst=RIGHT_HOST, check=True)
    finish_views(ctx)


@scenario(**_common(
    name="inner_mtu", title="Inner MTU black hole: large segments from the internal web server "
    "are lost inside the tunnel path, small packets pass",
    configured=BASE + "; the responder drops packets longer than 1200 bytes coming from the LAN "
               "(`iifname r-lan ip length > 1200 drop`, forward: an inner link with a small MTU "
               "that sends no ICMP).",
    fault="large packets from the LAN silently dropped on the responder",
    shows="Pings (56 bytes) and the TCP handshake to 10.20.5.10 pass; the download of 100 kB "
          "stalls: the server's full-size segments (1360-byte MSS) are retransmitted and never "
          "acknowledged, small segments get through.",
    keyless=[F("INNER_MTU", capture="client-any"), F("INNER_MTU", capture="client"),
             F("INNER_MTU", capture="gw-any")],
    with_keys=[F("INNER_MTU", "decrypted")],
    forbidden=["ROUTE_OUTSIDE_TUNNEL", "INNER_NO_RETURN", "SUBNET_OVERLAP", "INNER_BLOCKED",
               "DNS_NO_ANSWER"],
    verdicts={"all": [V("failing", "INNER_MTU", "segments above 1200 bytes from the internal "
                        "host are dropped: the download stalls", stage="inner")],
              "main": [V("healthy", None, "without keys the outer view shows ESP both ways "
                         "(the large packets never reach ESP)")]},
    verdicts_with_keys={"main": [V("failing", "INNER_MTU", "decrypted: the download stalls on "
                                   "full-size segments", stage="inner")]},
))
def inner_mtu(ctx: Ctx) -> None:
    tunnel(ctx)
    _sh(ctx, ctx.topo.right, "nft", "-f", "-", input=(
        "table inet gwfilter {\n chain gwfwd {\n  type filter hook forward priority 0; policy accept;\n"
        "  iifname \"r-lan\" ip length > 1200 drop\n }\n}\n"))
    ctx.note("responder: packets > 1200 bytes from the LAN dropped")
    ctx.ping(3, interval=0.2, dst=LAN_HOST, check=True)
    http(ctx, "/big.bin", wait=12)
    finish_views(ctx)


OVPN_TUNNEL = "192.0.2.2<->198.51.100.2:1194/udp"


@scenario(**_common(
    name="inner_openvpn_no_return", title="OpenVPN: the pushed route to the office LAN works "
    "but the internal host has no route back to the VPN pool (tun0 views)",
    protocol="openvpn",
    configured="OpenVPN 2.6 over UDP 1194 (`dev tun`, `disable-dco`, topology subnet, pool "
               "10.8.0.0/24, `push \"route 10.20.5.0 255.255.255.0\"`), ECDSA certificates; "
               "office LAN 10.20.5.0/24 behind the server (internal host 10.20.5.10 with web + "
               "dnsmasq, no default route); captures: router m-r (outer), client `tcpdump -i "
               "any` (l-eth0 + tun0), server `tcpdump -i any` (r-eth0 + tun0 + r-lan)",
    fault="the internal host has no route back to 10.8.0.0/24",
    shows="Pings to the server's tunnel address 10.8.0.1 are answered through P_DATA both "
          "ways; pings, a DNS query and an HTTP connection from 10.8.0.2 to 10.20.5.10 go into "
          "tun0, are forwarded to the LAN by the server, and are never answered.",
    views=[{"file": "inner_openvpn_no_return-client-any.pcap", "interface": "client-any",
            "view": "client `tcpdump -i any` (Linux cooked v2: l-eth0 + tun0)"},
           {"file": "inner_openvpn_no_return-gw-any.pcap", "interface": "gw-any",
            "view": "server `tcpdump -i any` (r-eth0 + tun0 + the LAN side r-lan)"}],
    keyless=[F("INNER_NO_RETURN", capture="client-any"), F("INNER_NO_RETURN", capture="gw-any")],
    forbidden=["ROUTE_OUTSIDE_TUNNEL", "INNER_BLOCKED", "SUBNET_OVERLAP", "INNER_MTU",
               "OPENVPN_NO_RESPONSE", "VPN_DATA_ONE_WAY"],
    verdicts={"all": [V("failing", "INNER_NO_RETURN",
                        "the internal host has no route back to the VPN pool: requests through "
                        "tun0 reach the LAN and nothing returns", tunnel=OVPN_TUNNEL,
                        stage="routing")],
              "main": [V("healthy", None, "the outer view shows P_DATA both ways (the pings to "
                         "10.8.0.1 are answered); the data channel cannot be decrypted",
                         tunnel=OVPN_TUNNEL)]},
))
def inner_openvpn_no_return(ctx: Ctx) -> None:
    from . import openvpn as ovpn
    from .scenarios import _ovpn_files, _ovpn_wait

    topo = ctx.topo
    lan_up(ctx, return_route=False)
    sf, cf = _ovpn_files(ctx)
    name = ctx.sc.name
    for dev_label, ns in (("client-any", topo.left), ("gw-any", topo.right)):
        p = ctx.work / f"{name}-{dev_label}.pcap"
        ctx.captures.append((dev_label, topo.capture("any", p, ns, buffer_kib=32768), p))
    p = ctx.work / f"{name}-gw-lan.pcap"
    ctx.captures.append(("r-lan", topo.capture("r-lan", p, topo.right, buffer_kib=32768), p))
    ctx.start_capture()
    ovpn.start(ctx, "right", ovpn.server_conf(
        extra='push "route 10.20.5.0 255.255.255.0"\n'), sf)
    ovpn.start(ctx, "left", ovpn.client_conf(extra="explicit-exit-notify 1\n"), cf)
    if not _ovpn_wait(ctx, "Initialization Sequence Completed", 20):
        raise RuntimeError("OpenVPN client did not connect")
    ctx.ping(3, interval=0.2, src=None, dst=ovpn.SERVER_TUN, check=True)
    ctx.ping(4, interval=0.3, src=None, dst=LAN_HOST)
    dns(ctx, tries=2)
    http(ctx, "/index.html", wait=5)
    ctx.sleep(7)
    ctx.ping(1, src=None, dst=ovpn.SERVER_TUN)
