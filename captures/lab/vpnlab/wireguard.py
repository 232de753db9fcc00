"""WireGuard (wireguard-go, the userspace implementation) in the lab namespaces.

There is no WireGuard kernel module on these machines, so both ends run ``wireguard-go -f``
(Debian package ``wireguard-go``), configured with ``wg`` (``wireguard-tools``).  The server
(responder namespace) listens on UDP 51820 with interface ``wg1`` and tunnel address
10.9.0.1/24; the client (initiator namespace) uses ``wg0`` with 10.9.0.2/24.  The interfaces
have different names because wireguard-go's control socket lies in ``/var/run/wireguard/``,
which the namespaces share.  The daemon's verbose log and ``wg show`` output are kept like the
other daemons' (``<side>.log``, ``<side>-status.txt``); the configuration files are kept too
(they hold the lab's throw-away private keys).
"""

from __future__ import annotations

from pathlib import Path

from .net import RIGHT_OUT
from .proc import LabError, run, wait_for

PORT = 51820
SERVER_TUN = "10.9.0.1"
CLIENT_TUN = "10.9.0.2"
IFACE = {"left": "wg0", "right": "wg1"}
SOCK_DIR = Path("/var/run/wireguard")


def keypair() -> tuple[str, str]:
    """A fresh (private, public) key pair from ``wg genkey`` / ``wg pubkey``."""
    private = run(["wg", "genkey"]).stdout.strip()
    public = run(["wg", "pubkey"], input=private + "\n").stdout.strip()
    return private, public


def server_conf(private: str, peer_public: str, allowed: str = f"{CLIENT_TUN}/32") -> str:
    return (f"# pcapvpn lab: WireGuard server (responder namespace, {IFACE['right']})\n"
            f"[Interface]\nPrivateKey = {private}\nListenPort = {PORT}\n\n"
            f"[Peer]\nPublicKey = {peer_public}\nAllowedIPs = {allowed}\n")


def client_conf(private: str, peer_public: str, allowed: str,
                keepalive: int | None = None) -> str:
    ka = f"PersistentKeepalive = {keepalive}\n" if keepalive else ""
    return (f"# pcapvpn lab: WireGuard client (initiator namespace, {IFACE['left']})\n"
            f"[Interface]\nPrivateKey = {private}\n\n"
            f"[Peer]\nPublicKey = {peer_public}\nEndpoint = {RIGHT_OUT}:{PORT}\n"
            f"AllowedIPs = {allowed}\n{ka}")


def start(ctx, side: str, conf: str, address: str, routes: tuple[str, ...] = ()) -> None:
    """Start wireguard-go for ``side`` ("left" client / "right" server), load ``conf``, give
    the interface ``address`` (CIDR) and add ``routes`` through it."""
    d = ctx.work / side
    d.mkdir(parents=True, exist_ok=True)
    iface = IFACE[side]
    (d / "wg.conf").write_text(conf)
    (d / "wg.conf").chmod(0o600)
    sock = SOCK_DIR / f"{iface}.sock"
    if sock.exists():  # a previous run that did not clean up
        sock.unlink()
    ns = ctx.topo.left if side == "left" else ctx.topo.right
    proc = ctx.procs.start(f"wireguard-{side}", ctx.topo.ns_cmd(ns, "wireguard-go", "-f", iface),
                           logfile=d / "wireguard.log", env={"LOG_LEVEL": "verbose"})
    ctx.ovpn[side] = proc  # stopped with the other userspace VPN daemons (client first)
    ctx.ovpn_dirs[side] = d
    wait_for(lambda: sock.exists() or not proc.alive(), 10, what=f"{iface} control socket")
    if not proc.alive():
        raise LabError(f"wireguard-{side} exited: {(d / 'wireguard.log').read_text()[-800:]}")
    ctx.topo.sh(ns, "wg", "setconf", iface, str(d / "wg.conf"))
    ctx.topo.sh(ns, "ip", "addr", "add", address, "dev", iface)
    ctx.topo.sh(ns, "ip", "link", "set", iface, "up")
    for r in routes:
        ctx.topo.sh(ns, "ip", "route", "replace", r, "dev", iface)
    ctx.note(f"wireguard-go {iface} up on {side} ({address}"
             + (f", routes {', '.join(routes)}" if routes else "") + ")")


def save_status(ctx) -> None:
    """``wg show`` of both ends into status.txt (kept as <side>-status.txt) before they stop."""
    for side, d in ctx.ovpn_dirs.items():
        if side not in IFACE or not (d / "wg.conf").exists():
            continue
        ns = ctx.topo.left if side == "left" else ctx.topo.right
        cp = ctx.topo.sh(ns, "wg", "show", IFACE[side], check=False)
        # the private key is not printed by `wg show` (only "(hidden)")
        (d / "status.txt").write_text(f"$ wg show {IFACE[side]}\n{cp.stdout}{cp.stderr}")
