"""IP fragment reassembly for :class:`pcapvpn.decode.Decoder` (RFC 791 §3.2, RFC 8200 §4.5).

Fragment sets are keyed by (IP version, source, destination, protocol (IPv4), identification),
expire ``Limits.frag_timeout`` seconds of capture time after their first fragment (the decoder's
clock, fast-path ESP included), and are capped in number (``frag_max_sets``) and bytes
(``frag_max_bytes``): the oldest set is given up first.  A set given up (timeout, evicted, the
end of the capture) becomes a ``fragments_incomplete`` event; a complete one is dispatched like
an unfragmented datagram.  Overlapping copies: the later wins, as in most stacks.
"""

from __future__ import annotations

from collections import OrderedDict

from dissect.vpn import esp as _esp
from dissect.vpn import ip as _ip
from dissect.vpn import udpencap as _udpencap
from dissect.vpn.ip import IpProto

_P_UDP, _P_ESP, _P_AH = int(IpProto.UDP), int(IpProto.ESP), int(IpProto.AH)
_ESP = _udpencap.ESP


class _FragSet:
    __slots__ = ("first_ts", "last_ts", "pieces", "total", "nbytes", "frames",
                 "ipver", "src", "dst", "proto", "ident")

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

    def _fragment(self, ref, ts, r, data):
        ipver, src, dst, proto, sport, dport, l4off, end, frag_off, mf, ident, _h = r
        self.fragment_frames += 1
        lim = self.limits
        key = (ipver, src, dst, proto if ipver == 4 else 0, ident)
        fs = self._frags.get(key)
        if fs is None:
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
            return
        del self._frags[key]
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

    def _give_up(self, fs, why):
        self._frag_bytes -= fs.nbytes
        self.frag_incomplete += 1
        if why == "evicted":
            self.frag_evicted += 1
        self.sink.fragments_incomplete(fs.first_ts, fs.ipver, fs.src, fs.dst, fs.proto, fs.ident,
                                       tuple(fs.frames),
                                       _udpencap.fragment_head(fs.proto, fs.first_piece()), why)

    def _expire_fragments(self, now):
        limit = now - self.limits.frag_timeout
        frags = self._frags
        while frags:
            key, fs = next(iter(frags.items()))
            if fs.first_ts > limit:
                break
            del frags[key]
            self._give_up(fs, "timeout")
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
            _key, fs = self._frags.popitem(last=False)
            self._give_up(fs, "end")
