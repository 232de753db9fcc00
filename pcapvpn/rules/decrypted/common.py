"""What the decrypted-payload rules share: the opened messages of an IKE SA, their exchange and
key origin, the request of an exchange, and selector text."""

from __future__ import annotations

from pcapvpn.findings import msg
from pcapvpn.rules.common import ike_tunnel_of

OPENED = ("ok", "unverified")


def _msgs(sa):
    """Opened, described messages of an IKE SA (copies excluded)."""
    return [m for m in sa.messages
            if not m.copy and m.inner is not None and m.decrypt_status in OPENED]


def _tid(ctx, sa):
    t = ike_tunnel_of(ctx, sa)
    return t.id if t else None


def _key_note(m) -> str:
    return msg(" (decrypted with {keys})", keys=m.key_origin) if m.key_origin else ""


def _exchange(sa, m):
    return sa.exchanges[m.exchange] if m.exchange is not None else None


def _request_of(x):
    if x is None:
        return None
    for m in x.msgs:
        if m.inner is not None and not m.is_response and m.decrypt_status in OPENED:
            return m
    return None


def _ts_text(sels) -> str:
    from dissect.vpn.ident import selector_text

    return ", ".join(selector_text(s) for s in sels) or "(none)"
