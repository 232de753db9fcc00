"""WireGuard: handshakes (initiation -> response, or cookie reply) and transport data counters.

Every initiation carries a fresh sender index; the response names it as its receiver index, a
cookie reply too (WireGuard paper §5.4.2-§5.4.7).  A peer whose handshake is not answered sends a
new initiation every REKEY_TIMEOUT (5 s) for REKEY_ATTEMPT_TIME (90 s).  Transport data names the
receiver's index and a 64-bit counter that starts at 0 for each session; gaps in the counters seen
at the capture point are packets lost before it (or not mirrored).
"""

from __future__ import annotations

from dissect.vpn import wireguard as _wg

#: handshakes kept per tunnel (the first ones and the latest ones)
MAX_HANDSHAKES = 512
#: receiver indexes followed per tunnel
MAX_INDEXES = 256


class Handshake:
    __slots__ = ("sender", "from_client", "ts", "ref", "mac2", "response_ts", "response_ref",
                 "responder_index", "cookie_ts", "cookie_ref")

    def __init__(self, sender, from_client, ts, ref, mac2):
        self.sender = sender
        self.from_client = from_client
        self.ts = ts
        self.ref = ref
        self.mac2 = mac2
        self.response_ts = None
        self.response_ref = None
        self.responder_index = None
        self.cookie_ts = None
        self.cookie_ref = None

    @property
    def answered(self) -> bool:
        return self.response_ts is not None

    def to_dict(self):
        return {"sender_index": f"0x{self.sender:08x}", "from_client": self.from_client,
                "ts": self.ts, "frame": list(self.ref), "with_cookie": self.mac2,
                "response_ts": self.response_ts,
                "response_frame": list(self.response_ref) if self.response_ref else None,
                "cookie_reply_ts": self.cookie_ts}


class Counters:
    """Transport data sent to one receiver index."""

    __slots__ = ("d", "count", "min", "max", "late", "first_ts", "last_ts", "first_ref",
                 "keepalives")

    def __init__(self, d, counter, ts, ref):
        self.d = d
        self.count = 0
        self.min = counter
        self.max = counter
        self.late = 0
        self.first_ts = ts
        self.last_ts = ts
        self.first_ref = ref
        self.keepalives = 0

    @property
    def missing(self) -> int:
        return max(0, self.max - self.min + 1 - self.count)


class WgState:
    __slots__ = ("handshakes", "dropped", "by_sender", "counters", "cookies", "cookie_refs",
                 "orphan_responses", "indexes_dropped")

    def __init__(self):
        self.handshakes = []
        self.dropped = 0
        self.by_sender = {}
        self.counters = {}
        self.cookies = 0
        self.cookie_refs = []
        self.orphan_responses = 0
        self.indexes_dropped = 0

    def last_answered(self):
        for h in reversed(self.handshakes):
            if h.answered:
                return h
        return None

    def to_dict(self):
        gaps = sum(c.missing for c in self.counters.values())
        return {
            "handshakes": len(self.handshakes) + self.dropped,
            "handshakes_answered": sum(1 for h in self.handshakes if h.answered),
            "cookie_replies": self.cookies,
            "handshake_list": [h.to_dict() for h in self.handshakes[-50:]],
            "receiver_indexes": [
                {"index": f"0x{i:08x}", "direction": "client_to_server" if c.d == 0
                 else "server_to_client", "packets": c.count, "keepalives": c.keepalives,
                 "first_counter": c.min, "last_counter": c.max, "missing": c.missing,
                 "late": c.late, "first_ts": c.first_ts, "last_ts": c.last_ts}
                for i, c in list(self.counters.items())[:64]],
            "counter_gaps": gaps,
        }


def handle(t, st: WgState, from_client: bool, ts, ref, data, off, end) -> None:
    handle_message(t, st, from_client, ts, ref, _wg.parse(data, off, end), end - off)


def handle_message(t, st: WgState, from_client: bool, ts, ref, m, length) -> None:
    """One parsed message (:func:`dissect.vpn.wireguard.parse`) of ``length`` bytes."""
    d = 0 if from_client else 1
    kind = m[0]
    if kind == _wg.DATA:
        _, receiver, counter, plen = m
        t.data_packet(d, ts, ref, length)
        c = st.counters.get(receiver)
        if c is None:
            if len(st.counters) >= MAX_INDEXES:
                st.indexes_dropped += 1
                return
            c = st.counters[receiver] = Counters(d, counter, ts, ref)
        c.count += 1
        c.last_ts = ts
        if plen == 0:
            c.keepalives += 1
        if counter > c.max:
            c.max = counter
        elif counter < c.max:
            c.late += 1
            if counter < c.min:
                c.min = counter
        return
    t.control_packet(d, ts, ref)
    if kind == _wg.INITIATION:
        sender, mac2 = m[1], m[2]
        h = Handshake(sender, from_client, ts, ref, mac2)
        if len(st.handshakes) >= MAX_HANDSHAKES:
            old = st.handshakes.pop(MAX_HANDSHAKES // 4)
            st.by_sender.pop(old.sender, None)
            st.dropped += 1
        st.handshakes.append(h)
        st.by_sender[sender] = h
    elif kind == _wg.RESPONSE:
        sender, receiver = m[1], m[2]
        h = st.by_sender.get(receiver)
        if h is None:
            st.orphan_responses += 1
            return
        if h.response_ts is None:
            h.response_ts = ts
            h.response_ref = ref
            h.responder_index = sender
    elif kind == _wg.COOKIE_REPLY:
        receiver = m[1]
        st.cookies += 1
        if len(st.cookie_refs) < 20:
            st.cookie_refs.append(ref)
        h = st.by_sender.get(receiver)
        if h is not None and h.cookie_ts is None:
            h.cookie_ts = ts
            h.cookie_ref = ref
