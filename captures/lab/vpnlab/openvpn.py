"""OpenVPN server (right) and client (left) in the lab namespaces."""

from __future__ import annotations

from pathlib import Path

from .net import RIGHT_OUT
from .proc import LabError, run, wait_for

SERVER_TUN = "10.8.0.1"


def tls_crypt_key(path: Path) -> str:
    run(["openvpn", "--genkey", "tls-crypt", str(path)])
    return path.read_text()


def start(ctx, side: str, conf: str, files: dict[str, str]) -> None:
    """Write ``conf`` and ``files`` to <work>/<side>/ and start openvpn there."""
    d = ctx.work / side
    d.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (d / name).write_text(content)
        if name.endswith(".key"):
            (d / name).chmod(0o600)
    (d / "openvpn.conf").write_text(conf)
    ns = ctx.topo.left if side == "left" else ctx.topo.right
    proc = ctx.procs.start(f"openvpn-{side}", ctx.topo.ns_cmd(
        ns, "openvpn", "--cd", str(d), "--config", "openvpn.conf", "--log", "openvpn.log"),
        logfile=d / "openvpn.out")
    ctx.ovpn[side] = proc
    ctx.ovpn_dirs[side] = d
    wait_for(lambda: (d / "openvpn.log").exists() or not proc.alive(), 10,
             what=f"openvpn-{side} log")
    if not proc.alive():
        raise LabError(f"openvpn-{side} exited: {(d / 'openvpn.out').read_text()[-800:]}")


def log_text(ctx, side: str) -> str:
    f = ctx.work / side / "openvpn.log"
    return f.read_text(errors="replace") if f.exists() else ""


def server_conf(proto: str = "udp", port: int = 1194, cipher: str = "AES-256-GCM",
                extra: str = "") -> str:
    return f"""# pcapvpn lab: OpenVPN server (responder namespace)
mode server
tls-server
proto {proto}
port {port}
local {RIGHT_OUT}
dev tun
disable-dco
topology subnet
server 10.8.0.0 255.255.255.0
ca ca.crt
cert server.crt
key server.key
dh none
data-ciphers {cipher}
keepalive 5 20
status status.txt 1
verb 4
{extra}"""


def client_conf(proto: str = "udp", port: int = 1194, cipher: str = "AES-256-GCM",
                extra: str = "") -> str:
    return f"""# pcapvpn lab: OpenVPN client (initiator namespace)
client
proto {proto}
remote {RIGHT_OUT} {port}
nobind
dev tun
disable-dco
ca ca.crt
cert client.crt
key client.key
remote-cert-eku "TLS Web Server Authentication"
data-ciphers {cipher}
connect-retry 2
status status.txt 1
verb 4
{extra}"""
