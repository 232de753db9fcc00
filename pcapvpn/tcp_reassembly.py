"""TCP stream reassembly for the decoder: one policy for every TCP-carried VPN protocol.

The decoder follows the TCP streams of IKE/ESP (RFC 9329) and of the VPNs beside IPsec (OpenVPN,
PPTP, TLS).  :class:`TcpReassembler` turns each direction's segments (:class:`TcpDir`) into an
in-order byte buffer, ``TcpDir.buf``, that the protocol's framing reads after every segment and
releases with :meth:`TcpReassembler.consume`.  The policy (sequence numbers compared modulo 2^32):

* **In order**: a segment that starts at the next expected sequence number is appended.
* **SYN**: the direction starts over at ISN + 1 (a new connection on the same ports); bytes a SYN
  carries (TCP Fast Open) are not used.  ``synced`` tells the framing that the stream begins at a
  message boundary.
* **Joined mid-stream**: without a SYN, the first segment with data sets the next expected number
  (``synced`` stays False: the framing must find a message boundary itself).
* **Retransmission and overlap**: bytes before the next expected number were received already:
  the first copy wins, the rest of the segment (if any) is used; counted once per segment in
  ``retransmissions`` (TCP keep-alive probes, one old byte, count too).  Held segments that overlap
  each other are trimmed the same way when they are appended; a second copy of a held segment
  keeps the longer of the two.
* **Out of order**: a segment after a hole is held, at most ``Limits.tcp_max_ooo`` segments and
  ``Limits.tcp_max_ooo_bytes`` bytes per direction, until the hole fills.
* **Gap**: a hole is given up — the bytes never seen are skipped, the partial message before it is
  discarded, and the framing is told (``TcpDir.gap``) to find the next message boundary or stop —
  when the peer acknowledged beyond it (the other direction's ACK covers bytes the capture never
  saw: they will not be retransmitted), when holding one more segment would exceed the direction's
  bounds (``gaps_by_limit``), or when an RST ends the direction.  A hole still open at the end of
  the capture is counted as a gap; its held bytes are not delivered (they would arrive after
  everything else).  Counted in ``gaps``.
* **Cut by the snapshot length**: a segment captured shorter than it was on the wire (the
  decoder says by how much) takes its place in the stream at its full length, the bytes not
  captured standing in as zeros, and their range is kept (``TcpDir.cuts``): the framing still
  finds the message boundaries after it (a length-framed protocol's next Length lies in the next
  segment), and :meth:`TcpReassembler.captured_end` tells it where a message's captured bytes
  stop, so no byte that was not captured is ever read as the stream's.
* **FIN**: its data is data; the peer acknowledging the FIN's own sequence number is not a gap.
* **Memory**: at most ``Limits.tcp_max_streams`` directions (the least recently active one is
  forgotten: ``streams_evicted``); a direction whose buffered partial message exceeds
  ``Limits.tcp_max_buffer`` loses it (``bytes_dropped``, framing told ``gap``); all directions
  together hold at most ``Limits.tcp_max_bytes`` (buffered + held): the least recently active
  directions holding bytes are forgotten first (``streams_evicted``, their bytes in
  ``bytes_dropped``).  ``bytes`` is what is held now, ``peak_bytes`` the most ever held.

Assumption: one capture point sees a segment before its acknowledgement.  Merging captures of
the same traffic taken at different points may break it (an ACK seen first is taken as proof
that the segment was lost).
"""

from __future__ import annotations

from collections import OrderedDict

from dissect.vpn.ip import TcpFlag

__all__ = ["TcpDir", "TcpReassembler", "SYN", "FIN", "RST", "ACK"]

# plain ints for the per-segment path (dissect.vpn.number)
FIN = int(TcpFlag.FIN)
SYN = int(TcpFlag.SYN)
RST = int(TcpFlag.RST)
ACK = int(TcpFlag.ACK)

_MASK = 0xFFFFFFFF
#: what stands in for bytes the snapshot length cut (a segment's cut is at most 65,535 bytes:
#: the decoder's bound)
_ZEROS = memoryview(bytes(0xFFFF))
_HALF = 0x80000000



class _NoHeld(dict):
    """The held segments of a direction that holds none: one shared empty dict that cannot
    change (a direction gets a dict of its own at its first out-of-order segment; live keeps
    ``--max-sas`` directions, most never out of order, and an empty dict costs 64 bytes)."""

    __slots__ = ()

    def _refuse(self, *a, **kw):
        raise TypeError("the shared empty held segments cannot change")

    __setitem__ = __delitem__ = setdefault = update = pop = popitem = clear = _refuse

    def __reduce__(self):  # pickled and copied as the one shared object
        return "_NO_HELD"


_NO_HELD = _NoHeld()


def _rel(a: int, b: int) -> int:
    """``a - b`` as a signed 32-bit sequence-number difference."""
    return ((a - b + _HALF) & _MASK) - _HALF


class TcpDir:
    """One direction of a followed TCP stream."""

    __slots__ = ("key", "ipver", "app", "next_seq", "buf", "frames", "held", "held_bytes",
                 "nbytes", "fin_seq", "synced", "gap", "evicted", "cuts")

    def __init__(self, key, addr, app):
        #: (src, sport, dst, dport) of this direction (``rkey``: of the other one)
        self.key = key
        #: the IP version (``addr``: what the framing needs to report events); ``rkey`` and
        #: ``addr`` are made from ``key`` when read (two tuples less a direction, 160 bytes)
        self.ipver = addr[0] if addr is not None else None
        #: the framing's own state for this direction
        self.app = app
        self.next_seq = -1
        #: in-order bytes not yet consumed by the framing (a bytearray while there are any, else
        #: the shared ``b""``), and the frames that carried them (a list while there are any,
        #: else the shared ``()``)
        self.buf = b""
        self.frames = ()
        #: seq -> (bytes, ref): segments after a hole (``_NO_HELD`` while there are none)
        self.held = _NO_HELD
        self.held_bytes = 0
        self.nbytes = 0  # len(buf) + held_bytes
        self.fin_seq = -1
        self.synced = False
        #: set when bytes were skipped (a gap, or the buffer bound): the framing must resynchronise
        self.gap = False
        self.evicted = False
        #: ``(seq, length)`` of the byte ranges the snapshot length cut, in the buffer or held
        #: (a list while there are any, else the shared ``()``)
        self.cuts = ()

    @property
    def rkey(self) -> tuple:
        """(src, sport, dst, dport) of the other direction."""
        k = self.key
        return (k[2], k[3], k[0], k[1])

    @property
    def addr(self) -> tuple | None:
        """(ipver, src, dst, sport, dport) of this direction (None when opened without)."""
        if self.ipver is None:
            return None
        k = self.key
        return (self.ipver, k[0], k[2], k[1], k[3])


class TcpReassembler:
    """The directions followed and their bounds (see the module docstring for the policy)."""

    def __init__(self, limits):
        self.limits = limits
        #: key -> TcpDir, least recently active first: a plain dict (insertion order; a direction
        #: goes to the end by being taken out and put back under its own key), which costs ~60
        #: bytes a direction less than an OrderedDict's links and node table
        self.dirs: dict = {}
        self._holding: OrderedDict = OrderedDict()   # key -> TcpDir with nbytes > 0, same order
        self.bytes = 0
        self.peak_bytes = 0
        # counters (the capture summary reports them)
        self.retransmissions = 0
        self.gaps = 0
        self.gaps_by_limit = 0
        self.streams_evicted = 0
        self.bytes_dropped = 0

    # -- directions ----------------------------------------------------------------------------

    def get(self, key):
        return self.dirs.get(key)

    def open(self, key, addr, app) -> TcpDir:
        """Follow a new direction (forgetting the least recently active one at the bound)."""
        dirs = self.dirs
        while len(dirs) >= self.limits.tcp_max_streams and dirs:
            self._evict(next(iter(dirs.values())))
        d = dirs[key] = TcpDir(key, addr, app)
        return d

    def touch(self, d) -> None:
        """A segment of ``d`` that is not reassembled (:meth:`stop`): it stays recently active."""
        k = d.key
        self.dirs[k] = self.dirs.pop(k)

    def stop(self, d) -> None:
        """The framing stops reading ``d`` (not its protocol, or nothing more of interest): its
        bytes are released and its sequence numbers no longer followed (a SYN starts it over)."""
        self._add(d, -d.nbytes)
        d.buf = b""
        d.frames = ()
        d.held = _NO_HELD
        d.held_bytes = 0
        d.next_seq = -1
        d.gap = False
        d.cuts = ()

    def _evict(self, d) -> None:
        del self.dirs[d.key]
        self._holding.pop(d.key, None)
        self.bytes -= d.nbytes
        self.bytes_dropped += d.nbytes
        self.streams_evicted += 1
        d.evicted = True
        d.buf = b""
        d.frames = ()
        d.held = _NO_HELD
        d.nbytes = d.held_bytes = 0
        d.cuts = ()

    def _add(self, d, n: int) -> None:
        """Account ``n`` more (or, negative, fewer) bytes held by ``d``."""
        d.nbytes += n
        self.bytes += n
        if n > 0:
            if self.bytes > self.peak_bytes:
                self.peak_bytes = self.bytes
            if d.key not in self._holding:
                self._holding[d.key] = d
        elif d.nbytes == 0:
            self._holding.pop(d.key, None)

    def _room(self, d, n: int) -> bool:
        """Make room for ``n`` more bytes under ``tcp_max_bytes`` by forgetting the least
        recently active other directions that hold bytes; False when ``d`` alone is too big."""
        limit = self.limits.tcp_max_bytes
        holding = self._holding
        while self.bytes + n > limit and holding:
            first = next(iter(holding.values()))
            if first is d:
                if len(holding) == 1:
                    return False
                holding.move_to_end(d.key)
                continue
            self._evict(first)
        return self.bytes + n <= limit

    # -- segments ------------------------------------------------------------------------------

    def segment(self, d, seq, ack, flags, data, off, end, ref, cut=0) -> list:
        """One segment of direction ``d`` (payload ``data[off:end]``; ``cut``: bytes of it the
        snapshot length cut off, after ``end``).  Returns the directions whose buffer changed or
        that had a gap — ``d``, and/or the other direction when this segment's ACK gave up a
        hole of it — for the framing to read."""
        k = d.key
        self.dirs[k] = self.dirs.pop(k)
        if k in self._holding:
            self._holding.move_to_end(k)
        ready = []
        if flags & ACK:
            rev = self.dirs.get(d.rkey)
            if rev is not None and rev.next_seq >= 0 and self._peer_acked(rev, ack):
                ready.append(rev)
        if flags & SYN:
            self._restart(d, seq)
            return ready
        n = end - off
        if cut > 0:
            # the bytes not captured stand in as zeros at their place; their range is kept
            if d.cuts == ():
                d.cuts = []
            d.cuts.append(((seq + n) & _MASK, cut))
            data = b"".join((data[off:end], _ZEROS[:cut]))
            off, end = 0, n + cut
            n += cut
        if flags & FIN:
            d.fin_seq = (seq + n) & _MASK
        if n > 0:
            if d.next_seq < 0:
                d.next_seq = seq
            if self._place(d, seq, data, off, end, ref):
                ready.append(d)
        if flags & RST and d.held:
            self._skip(d, self._first_held(d))
            self._drain(d)
            if d not in ready:
                ready.append(d)
        return ready

    def _restart(self, d, seq) -> None:
        self._add(d, -d.nbytes)
        d.buf = b""
        d.frames = ()
        d.held = _NO_HELD
        d.held_bytes = 0
        d.next_seq = (seq + 1) & _MASK
        d.fin_seq = -1
        d.synced = True
        d.gap = False
        d.cuts = ()

    def _place(self, d, seq, data, off, end, ref) -> bool:
        lim = self.limits
        changed = False
        while True:
            n = end - off
            rel = _rel(seq, d.next_seq)
            if rel < 0:
                self.retransmissions += 1
                if -rel >= n:
                    return changed
                off -= rel
                seq = d.next_seq
                rel = 0
            if rel == 0:
                self._append(d, data[off:end], ref)
                self._drain(d)
                return True
            held = d.held
            old = held.get(seq)
            if old is not None:  # a second copy of a held segment: keep the longer
                self.retransmissions += 1
                if n > len(old[0]):
                    self._add(d, n - len(old[0]))
                    d.held_bytes += n - len(old[0])
                    held[seq] = (bytes(data[off:end]), ref)
                return changed
            if (len(held) < lim.tcp_max_ooo and d.held_bytes + n <= lim.tcp_max_ooo_bytes
                    and self._room(d, n)):
                if held is _NO_HELD:
                    held = d.held = {}
                held[seq] = (bytes(data[off:end]), ref)
                d.held_bytes += n
                self._add(d, n)
                return changed
            # a bound: give the first hole up and try again
            first = self._first_held(d)
            target = seq if first is None or _rel(seq, first) < 0 else first
            self.gaps_by_limit += 1
            self._skip(d, target)
            self._drain(d)
            changed = True

    def _first_held(self, d):
        if not d.held:
            return None
        ns = d.next_seq
        return min(d.held, key=lambda s: _rel(s, ns))

    def _append(self, d, chunk, ref) -> None:
        n = len(chunk)
        if not n:
            return
        if d.buf:
            d.buf += chunk
            d.frames.append(ref)
        else:
            d.buf = bytearray(chunk)
            if d.frames:  # the last frame of a message consumed before
                d.frames.append(ref)
            else:
                d.frames = [ref]
        d.next_seq = (d.next_seq + n) & _MASK
        self._add(d, n)
        if self.bytes > self.limits.tcp_max_bytes:
            self._room(d, 0)

    def _drain(self, d) -> None:
        """Append the held segments that the next expected number has reached."""
        held = d.held
        if not held:
            return
        ns = d.next_seq
        for s in sorted(held, key=lambda x: _rel(x, ns)):
            rel = _rel(s, d.next_seq)
            if rel > 0:
                return
            chunk, ref = held.pop(s)
            d.held_bytes -= len(chunk)
            self._add(d, -len(chunk))
            if rel < 0:
                self.retransmissions += 1
                chunk = chunk[-rel:] if -rel < len(chunk) else b""
            self._append(d, chunk, ref)
        if not held and d.held is held:  # every hole filled: back to the shared empty one
            d.held = _NO_HELD

    def _skip(self, d, to) -> None:
        """Give up the bytes before ``to`` that were never seen (a gap)."""
        self.gaps += 1
        if d.buf:
            self._add(d, -len(d.buf))
            d.buf = b""
        d.frames = ()
        d.next_seq = to
        d.gap = True
        if d.cuts:
            self._prune_cuts(d)

    def _peer_acked(self, d, ack) -> bool:
        """The other side acknowledged ``d``'s bytes up to ``ack``: the ones the capture has not
        seen by now are lost to it (a gap)."""
        moved = False
        while True:
            rel = _rel(ack, d.next_seq)
            if rel <= 0 or (rel == 1 and d.fin_seq >= 0 and 0 <= _rel(d.fin_seq, d.next_seq) <= 1):
                return moved  # nothing unseen (a FIN's own sequence number is not data)
            first = self._first_held(d)
            if first is not None and _rel(first, d.next_seq) <= rel:
                self._skip(d, first)
                self._drain(d)
            else:
                self._skip(d, ack & _MASK)
                return True
            moved = True

    # -- the framing's side ----------------------------------------------------------------------

    def consume(self, d, n: int) -> None:
        """The framing used the first ``n`` buffered bytes; a partial message left over longer
        than ``tcp_max_buffer`` is dropped (a bound: counted, ``gap`` set)."""
        if n:
            if n >= len(d.buf):
                d.buf = b""
            else:
                del d.buf[:n]
            self._add(d, -n)
            d.frames = d.frames[-1:] if d.buf else ()
            if d.cuts:
                self._prune_cuts(d)
        if len(d.buf) > self.limits.tcp_max_buffer:
            self.bytes_dropped += len(d.buf)
            self.discard(d)
            d.gap = True

    def discard(self, d) -> None:
        """The framing gives the buffered bytes up (not a message boundary, or not its protocol)."""
        if d.buf:
            self._add(d, -len(d.buf))
            d.buf = b""
        d.frames = ()
        if d.cuts:
            self._prune_cuts(d)

    def captured_end(self, d, a: int, b: int) -> int:
        """Where the captured bytes of ``d.buf[a:b]`` (a message the framing found) stop: ``b``,
        or the buffer offset of the first byte in it that the snapshot length cut."""
        out = b
        if d.cuts:
            start = (d.next_seq - len(d.buf)) & _MASK
            for cs, cl in d.cuts:
                r = _rel(cs, start)
                if r < out and r + cl > a:
                    out = max(r, a)
        return out

    def cut_in(self, d, a: int, b: int) -> int:
        """The buffer offset where the first cut range overlapping ``d.buf[a:b]`` ends, or -1
        (every byte of it was captured)."""
        if d.cuts:
            start = (d.next_seq - len(d.buf)) & _MASK
            for cs, cl in d.cuts:
                r = _rel(cs, start)
                if r < b and r + cl > a:
                    return r + cl
        return -1

    def _prune_cuts(self, d) -> None:
        """Forget the cut ranges that end before the buffer's first byte."""
        start = (d.next_seq - len(d.buf)) & _MASK
        kept = [c for c in d.cuts if _rel(c[0], start) + c[1] > 0]
        d.cuts = kept if kept else ()

    def finish(self) -> None:
        """End of the capture: a hole still open is a gap (its held bytes are not delivered)."""
        for d in self.dirs.values():
            if d.held:
                self.gaps += 1
