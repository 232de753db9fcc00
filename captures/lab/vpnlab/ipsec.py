"""swanctl.conf / strongswan.conf builders for the IPsec scenarios."""

from __future__ import annotations

from .net import LEFT_NET, RIGHT_NET, RIGHT_OUT
from .strongswan import merge

PSK = '"pcapvpn-lab-psk-5b8e1d"'
WRONG_PSK = '"pcapvpn-lab-psk-WRONG"'
LEFT_ID = "left.lab.example"
RIGHT_ID = "right.lab.example"


def conn(side: str, *, left_addr: str, version: int = 2,
         proposals: str = "aes128-sha256-modp2048", esp: str = "aes128-sha256",
         auth: str = "psk", cert: str | None = None, psk: str = PSK,
         local_id: str | None = None, remote_id: str | None = None,
         local_ts: str | None = None, remote_ts: str | None = None,
         conn_extra: dict | None = None, child_extra: dict | None = None,
         secret_ids: bool = True, name: str = "lab", child: str = "net") -> dict:
    """Build a swanctl.conf dict for ``side`` ('left' = initiator, 'right' = responder)."""
    is_left = side == "left"
    local_id = local_id or (LEFT_ID if is_left else RIGHT_ID)
    remote_id = remote_id or (RIGHT_ID if is_left else LEFT_ID)
    local: dict = {"auth": "pubkey" if auth == "cert" else auth, "id": local_id}
    remote: dict = {"auth": "pubkey" if auth == "cert" else auth, "id": remote_id}
    if auth == "cert":
        local["certs"] = f"{cert}.crt"
    c: dict = {
        "version": version,
        "local_addrs": left_addr if is_left else RIGHT_OUT,
        "remote_addrs": RIGHT_OUT if is_left else "%any",
        "proposals": proposals,
        "keyingtries": 1,
        "local": local,
        "remote": remote,
        "children": {
            child: {
                "local_ts": local_ts or (LEFT_NET if is_left else RIGHT_NET),
                "remote_ts": remote_ts or (RIGHT_NET if is_left else LEFT_NET),
                "esp_proposals": esp,
                "mode": "tunnel",
                "start_action": "none",
            }
        },
    }
    if version == 2:
        c["mobike"] = "no"
    if conn_extra:
        c = merge(c, conn_extra)
    if child_extra:
        c["children"][child] = merge(c["children"][child], child_extra)
    conf: dict = {"connections": {name: c}}
    if auth == "psk":
        sec: dict = {"secret": psk}
        if secret_ids:
            sec["id-a"] = LEFT_ID
            sec["id-b"] = RIGHT_ID
        conf["secrets"] = {"ike-lab": sec}
    return conf


def pair(left_addr: str, *, left: dict | None = None, right: dict | None = None,
         **common) -> tuple[dict, dict]:
    """Matching left/right swanctl dicts; ``left``/``right`` hold per-side overrides."""
    lc = dict(common)
    lc.update(left or {})
    rc = dict(common)
    rc.update(right or {})
    return (conn("left", left_addr=left_addr, **lc), conn("right", left_addr=left_addr, **rc))
