"""IP fragment reassembly for :class:`pcapvpn.decode.Decoder` (RFC 791 §3.2, RFC 8200 §4.5).

Fragment sets are keyed by (IP version, source, destination, protocol (IPv4), identification),
expire ``Limits.frag_timeout`` seconds of capture time after their first fragment (the decoder's
clock, fast-path ESP included), and are capped in number (``frag_max_sets``) and bytes
(``frag_max_bytes``): the oldest set is given up first.  A set given up (timeout, evicted, the
end of the capture) becomes a ``fragments_incomplete`` event; a complete one is dispatched like
an unfragmented datagram.  Overlapping copies: the later wins, as in most stacks.

A set whose first fragment holds an IKE message (UDP, classified as IKE) is given up as soon as
the conversation moves on without it: the next IKE message or fragment set between the same two
addresses, either way, once :data:`FRAGMENT_BURST` has passed since the set's last fragment (a
sender emits a datagram's fragments back to back; an answer cannot come sooner).  Its IKE
message then goes to the sink read from the first fragment (``ike_event(head_only=True)``), in
its place among the IKE messages: a port capture filter ('udp port 500 or udp port 4500') keeps
only first fragments, and a firewall that drops non-first fragments leaves the same.
"""

from __future__ import annotations

from collections import OrderedDict

from dissect.vpn import esp as _esp
from dissect.vpn import ip as _ip
from dissect.vpn import udpencap as _udpencap
from dissect.vpn.ip import IpProto
from pcapvpn.events import ike_event

_P_UDP, _P_ESP, _P_AH = int(IpProto.UDP), int(IpProto.ESP), int(IpProto.AH)
_ESP, _IKE = _udpencap.ESP, _udpencap.IKE
_UDP_HEADER = 8
_IKE_HEADER, _IKE_LENGTH_AT = 28, 24  # RFC 7296 §3.1: the Length is the header's last word

#: seconds: how long after a datagram's last fragment the rest of it may still come (a sender
#: emits the fragments back to back; mirrors reorder them by microseconds)
FRAGMENT_BURST = 0.005


def _head_fits(chunk, off) -> bool:
    """The first fragment ``chunk`` (UDP header and data) is the head of a larger datagram
    (its UDP Length says more than it holds) whose IKE message at ``off`` fits in that datagram
    (the IKE Length, RFC 7296 §3.1, counts the whole message): else it is no IKE head worth
    reading (a damaged or forged fragment)."""
    if len(chunk) < off + _IKE_HEADER:
        return False
    udp_len = int.from_bytes(chunk[4:6], "big")
    ike_len = int.from_bytes(chunk[off + _IKE_LENGTH_AT:off + _IKE_HEADER], "big")
    return len(chunk) < udp_len and _IKE_HEADER <= ike_len and off + ike_len <= udp_len


class _FragSet:
    __slots__ = ("first_ts", "last_ts", "pieces", "total", "nbytes", "frames",
                 "ipver", "src", "dst", "proto", "ident", "ike")

    def __init__(self, ts, ipver, src, dst, proto, ident):
        self.first_ts = ts
        self.last_ts = ts
        self.pieces = []  # (offset, bytes)
        self.total = -1  # known once the last fragment (MF clear) arrived
        self.nbytes = 0
        self.frames = []
        self.ipver = ipver
        self.src = src
        self.dst = dst
        self.proto = proto
        self.ident = ident
        #: the first fragment holds an IKE message: (its frame, the first fragment's payload,
        #: sport, dport, the message's offset in it), else None
        self.ike = None

    def complete(self):
        """Return the reassembled payload when every byte 0..total is present, else None."""
        total = self.total
        if total < 0:
            return None
        pieces = sorted(self.pieces)
        covered = 0
        for off, chunk in pieces:
            if off > covered:
                return None
            e = off + len(chunk)
            if e > covered:
                covered = e
        if covered < total:
            return None
        buf = bytearray(total)
        for off, chunk in pieces:  # later (overlapping) copies win, as in most stacks
            n = min(len(chunk), total - off)
            if n > 0:
                buf[off:off + n] = chunk[:n]
        return bytes(buf)

    def first_piece(self):
        for off, chunk in self.pieces:
            if off == 0:
                return chunk
        return None



class FragmentReassembly:
    """The decoder's fragment sets and their counters (a base of
    :class:`pcapvpn.decode.Decoder`, whose ``sink``, ``limits``, ``_clock`` and dispatch
    methods it uses)."""

    def _init_fragments(self) -> None:
        self.fragment_frames = 0
        self.reassembled = 0
        self.frag_incomplete = 0
        self.frag_evicted = 0
        self._frags: OrderedDict = OrderedDict()
        self._frag_bytes = 0
        #: the oldest set's first fragment + frag_timeout (inf: none pending); see
        #: ``Decoder._clock``
        self._frag_deadline = float("inf")
        #: (src, dst) -> {key: None} of the pending sets whose first fragment holds an IKE
        #: message, in arrival order (a dict: removal and the oldest in constant time)
        self._ike_heads: dict = {}

    def _fragment(self, ref, ts, r, data):
        ipver, src, dst, proto, sport, dport, l4off, end, frag_off, mf, ident, _h = r
        self.fragment_frames += 1
        lim = self.limits
        key = (ipver, src, dst, proto if ipver == 4 else 0, ident)
        fs = self._frags.get(key)
        if fs is None:
            if self._ike_heads:
                self._ike_passed(src, dst, ts)
            while len(self._frags) >= lim.frag_max_sets:
                self._give_up(self._frags.popitem(last=False)[1], "evicted")
            self._new_deadline()
            fs = self._frags[key] = _FragSet(ts, ipver, src, dst, proto, ident)
            if len(self._frags) == 1:
                self._frag_deadline = ts + lim.frag_timeout
        chunk = bytes(data[l4off:end])
        if self._frag_bytes + len(chunk) > lim.frag_max_bytes:
            while self._frags and self._frag_bytes + len(chunk) > lim.frag_max_bytes:
                k, old = next(iter(self._frags.items()))
                if old is fs:
                    break
                del self._frags[k]
                self._give_up(old, "evicted")
            self._new_deadline()
        fs.pieces.append((frag_off, chunk))
        fs.nbytes += len(chunk)
        self._frag_bytes += len(chunk)
        fs.frames.append(ref)
        fs.last_ts = ts
        if frag_off == 0 and ipver == 6:
            fs.proto = proto
        if not mf:
            fs.total = frag_off + len(chunk)
        payload = fs.complete()
        if payload is None:
            if frag_off == 0 and proto == _P_UDP and fs.ike is None and sport >= 0:
                kind, a, _b = self._classify_udp(src, dst, sport, dport, chunk, _UDP_HEADER,
                                                 len(chunk))
                if kind == _IKE and _head_fits(chunk, a):
                    fs.ike = (ref, chunk, sport, dport, a)
                    self._ike_heads.setdefault((src, dst), {})[key] = None
            return
        del self._frags[key]
        if fs.ike is not None:
            self._unhead(fs, key)
        self._new_deadline()
        self._frag_bytes -= fs.nbytes
        self.reassembled += 1
        self._reassembled(ref, ts, fs, payload)

    def _reassembled(self, ref, ts, fs, payload):
        """Dispatch a reassembled datagram (``payload`` = transport header + data)."""
        frames = tuple(fs.frames)
        ipver, src, dst, proto = fs.ipver, fs.src, fs.dst, fs.proto
        end = len(payload)
        if proto == _P_UDP:
            sport, dport, poff = _ip.decode_udp(payload, 0, end)
            kind, a, b = self._classify_udp(src, dst, sport, dport, payload, poff, end)
            if kind == _ESP:
                self.sink.esp(ref, ts, ipver, src, dst, sport, dport, a, b, end - poff)
                self._esp_payload(ref, ts, ipver, src, dst, sport, dport, a, b, payload, poff, end)
                self.sink.esp_fragmented(ipver, src, dst, a, frames, "esp")
            else:
                self._udp_other(ref, ts, ipver, src, dst, sport, dport, kind, a, payload, poff,
                                end, frames)
        elif proto == _P_ESP:
            spi, seq = _esp.parse_esp(payload, 0, end)
            self.sink.esp(ref, ts, ipver, src, dst, -1, -1, spi, seq, end)
            self._esp_payload(ref, ts, ipver, src, dst, -1, -1, spi, seq, payload, 0, end)
            self.sink.esp_fragmented(ipver, src, dst, spi, frames, "esp")
        else:
            self._other_proto(ref, ts, ipver, src, dst, proto, -1, -1, payload, 0, end)
            if proto == _P_AH and end >= 8:
                spi = _esp.parse_ah(payload, 0, end)[2]
                self.sink.esp_fragmented(ipver, src, dst, spi, frames, "ah")

    def _give_up(self, fs, why, key=None):
        self._frag_bytes -= fs.nbytes
        self.frag_incomplete += 1
        if why == "evicted":
            self.frag_evicted += 1
        frames = tuple(fs.frames)
        ike = fs.ike
        if ike is not None:
            self._unhead(fs, key)
            ref, chunk, sport, dport, off = ike
            ike_event(self.sink, ref, fs.first_ts, fs.ipver, fs.src, fs.dst, sport, dport, "udp",
                      chunk, off, len(chunk), frames, off != _UDP_HEADER, head_only=True)
        self.sink.fragments_incomplete(fs.first_ts, fs.ipver, fs.src, fs.dst, fs.proto, fs.ident,
                                       frames,
                                       _udpencap.fragment_head(fs.proto, fs.first_piece()), why)

    def _unhead(self, fs, key) -> None:
        """Forget ``fs`` (its key ``key``, or found by its fields) among the IKE head sets."""
        pair = (fs.src, fs.dst)
        keys = self._ike_heads.get(pair)
        if not keys:
            return
        if key is None:
            key = (fs.ipver, fs.src, fs.dst, fs.proto if fs.ipver == 4 else 0, fs.ident)
        keys.pop(key, None)
        if not keys:
            del self._ike_heads[pair]

    def _ike_passed(self, src, dst, ts) -> None:
        """An IKE message or a new fragment set between ``src`` and ``dst``: the pending IKE
        head sets of the pair (both ways) whose last fragment is :data:`FRAGMENT_BURST` old are
        given up ("passed"), so their messages reach the sink before this one.  Oldest first,
        up to the first one still within the burst (each set is looked at once when given up: a
        flood of heads costs no more per head)."""
        heads = self._ike_heads
        frags = self._frags
        for pair in ((src, dst), (dst, src)):
            keys = heads.get(pair)
            while keys:
                key = next(iter(keys))
                fs = frags.get(key)
                if fs is not None and ts - fs.last_ts < FRAGMENT_BURST:
                    break
                del keys[key]
                if fs is not None:
                    del frags[key]
                    self._give_up(fs, "passed", key)
            if not keys:
                heads.pop(pair, None)
        self._new_deadline()

    def _expire_fragments(self, now):
        limit = now - self.limits.frag_timeout
        frags = self._frags
        while frags:
            key, fs = next(iter(frags.items()))
            if fs.first_ts > limit:
                break
            del frags[key]
            self._give_up(fs, "timeout", key)
        self._new_deadline()

    def _new_deadline(self):
        """The oldest pending set (in arrival order) decides when the next expiry is due."""
        frags = self._frags
        self._frag_deadline = (next(iter(frags.values())).first_ts + self.limits.frag_timeout
                               if frags else float("inf"))

    def _finish_fragments(self) -> None:
        """The end of the capture: expire what timed out, give up the rest ("end")."""
        if self._frags and self._clock > float("-inf"):
            self._expire_fragments(self._clock)
        while self._frags:
            key, fs = self._frags.popitem(last=False)
            self._give_up(fs, "end", key)
