"""WireGuard ``wg show`` and ``wg show all dump`` (wg(8), "COMMANDS: show").

``wg show``: ``interface: NAME`` then indented ``key: value`` lines (public key, listening
port), and a ``peer: PUBLIC-KEY`` block per peer (``endpoint``, ``allowed ips``, ``latest
handshake: 1 minute, 2 seconds ago``, ``transfer: 1.23 KiB received, 4.56 KiB sent``,
``persistent keepalive``).  ``dump``: tab-separated; the interface line holds private-key,
public-key, listen-port, fwmark; each peer line public-key, preshared-key, endpoint,
allowed-ips, latest-handshake (seconds since the epoch, 0 = never), transfer-rx, transfer-tx,
persistent-keepalive; with ``all`` every line starts with the interface name.

Secrets never leave this module: the private key and the preshared key are replaced by
``(hidden)`` in the kept text.  Each peer becomes a ``wg_peer`` event: endpoint (the peer),
counters ``bytes_in`` / ``bytes_out``, the latest handshake (``handshake_s_ago`` or
``handshake_epoch``), the public key as identity.
"""

from __future__ import annotations

import re

from .event import Document, LogEvent, Parsed

NAME = "wireguard"
TITLE = "WireGuard wg show"
PROGS = ()

_KEY = r"[A-Za-z0-9+/]{42,43}="
_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3, "TiB": 1024 ** 4}
_AGO = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def match(msg: str, prog: str | None = None) -> bool:
    return False


def classify(ev: LogEvent) -> None:
    return


def sniff(lines: list[str]) -> int:
    n = 0
    for ln in lines:
        if ln.startswith(("interface: ", "peer: ")) or re.match(rf"(?:\S+\t)?{_KEY}\t", ln):
            n += 3
    return n


def _endpoint(ev: LogEvent, ep: str) -> None:
    m = re.fullmatch(r"\[?([0-9A-Fa-f.:]+?)\]?:(\d+)", ep.strip())
    if m:
        ev.peer, ev.peer_port = m.group(1), int(m.group(2))


def _size(s: str) -> int | None:
    m = re.match(r"([\d.]+) (B|KiB|MiB|GiB|TiB)", s.strip())
    if not m:
        return None
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def parse(lines: list[str]) -> Parsed:
    peer = None
    iface = None
    for i, ln in enumerate(lines):
        if not ln.strip():
            continue
        cols = ln.split("\t")
        if len(cols) >= 4 and re.fullmatch(_KEY, cols[-4] if len(cols) in (4, 5) else cols[0]) \
                and len(cols) in (4, 5):
            # interface line of a dump: [iface] private public port fwmark
            head = cols[0] if len(cols) == 5 else None
            iface = head
            safe = ([head] if head else []) + ["(hidden)"] + cols[-3:]
            ev = LogEvent("\t".join(safe), "\t".join(safe))
            ev.prog, ev.ctx = "wg", iface
            yield i, ev
            continue
        if len(cols) in (8, 9) and re.fullmatch(_KEY, cols[-8]):
            head = cols[0] if len(cols) == 9 else iface
            pub, _psk, ep, allowed, hs, rx, tx, ka = cols[-8:]
            safe = ([cols[0]] if len(cols) == 9 else []) + [pub, "(hidden)", ep, allowed, hs, rx,
                                                          tx, ka]
            ev = LogEvent("\t".join(safe), "\t".join(safe))
            ev.kind, ev.prog, ev.ctx = "wg_peer", "wg", head
            _endpoint(ev, ep)
            ev.ids = [pub]
            c = {}
            if rx.isdigit() and tx.isdigit():
                c["bytes_in"], c["bytes_out"] = int(rx), int(tx)
            if hs.isdigit():
                c["handshake_epoch"] = int(hs)
            ev.counters = c
            ev.reason = allowed
            yield i, ev
            continue
        m = re.match(r"interface: (\S+)", ln)
        if m:
            iface = m.group(1)
            peer = None
            ev = LogEvent(ln.strip(), ln)
            ev.prog, ev.ctx = "wg", iface
            yield i, ev
            continue
        m = re.match(rf"peer: ({_KEY})", ln)
        if m:
            peer = LogEvent(ln.strip(), ln)
            peer.kind, peer.prog, peer.ctx = "wg_peer", "wg", iface
            peer.ids = [m.group(1)]
            peer.counters = {}
            yield i, peer
            continue
        m = re.match(r"\s+([a-z ]+): (.*)", ln)
        if m:
            key, val = m.group(1), m.group(2)
            shown = ln
            if key in ("private key", "preshared key"):
                shown = re.sub(r": .*", ": (hidden)", ln)
            ev = LogEvent(shown.strip(), shown)
            ev.prog, ev.ctx = "wg", iface
            if peer is not None:
                peer.raw += "\n" + shown
                if key == "endpoint":
                    _endpoint(peer, val)
                elif key == "allowed ips":
                    peer.reason = val
                elif key == "latest handshake":
                    secs = sum(int(n) * _AGO[u] for n, u in
                               re.findall(r"(\d+) (second|minute|hour|day)s?", val))
                    assert peer.counters is not None
                    peer.counters["handshake_s_ago"] = secs
                elif key == "transfer":
                    r = re.match(r"(.+?) received, (.+?) sent", val)
                    if r:
                        assert peer.counters is not None
                        peer.counters["bytes_in"] = _size(r.group(1))
                        peer.counters["bytes_out"] = _size(r.group(2))
            yield i, ev
            continue
        yield i, None


DOCUMENTS = (Document("wg-show", "WireGuard wg show / wg show all dump", sniff, parse),)
