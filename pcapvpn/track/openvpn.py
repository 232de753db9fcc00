"""OpenVPN sessions: hard resets, the reliability layer, the TLS handshake inside P_CONTROL,
and the data channel.

A session starts with a client hard reset (its 64-bit session ID) and is answered by the server's
hard reset (the server's session ID, acknowledging the client's packet 0).  Each side numbers its
control packets (message packet IDs); a packet ID sent again is a retransmission (the peer did not
acknowledge it in time).  Without tls-crypt the control payloads are the TLS records of the
control channel, reassembled here in packet-ID order and followed by :mod:`pcapvpn.track.tlsvpn`.
Data packets carry no session ID: they count for the tunnel and for its latest session.
"""

from __future__ import annotations

from operator import attrgetter

from dissect.vpn import openvpn as _ov
from dissect.vpn.errors import DissectError
from pcapvpn.track.tlsvpn import StreamBounds, TlsConversation

#: sessions kept per tunnel (the earliest and the latest are kept when there are more)
MAX_SESSIONS = 64
#: evidence refs kept per list
MAX_REFS = 20


class PacketIds:
    """A set of packet IDs (those of a control channel seen, or acknowledged by the peer),
    held as one run ``[lo, lo + n)`` and the IDs outside it (made only when an ID neither extends
    the run nor falls in it: a tuple of up to :attr:`SMALL`, then a set).  The reliability layer numbers a sender's packets 0, 1,
    2, ... and acknowledges them in about that order, so a channel's IDs are one run and cost
    two ints, where a ``set`` costs 216 bytes empty and ~60 more per ID (a flood keeps
    thousands of sessions).  The run's length ``n``, not its end, is kept: a small int is
    shared by the interpreter, an end past 256 (a random 32-bit ID of a mutated packet) would
    be an int object of 32 bytes of its own.  Membership, size, maximum and order are a set's,
    exactly (an ID outside the run stays in ``more`` even when the run later reaches it; the
    two never overlap)."""

    __slots__ = ("lo", "n", "more")

    #: IDs outside the run kept in a tuple (40 + 8 bytes each) before a set (216 bytes empty)
    SMALL = 8

    def __init__(self):
        self.lo = 0
        self.n = 0
        self.more = None

    @property
    def hi(self) -> int:
        """The end of the run (exclusive)."""
        return self.lo + self.n

    def __len__(self) -> int:
        return self.n + (len(self.more) if self.more else 0)

    def __bool__(self) -> bool:
        return self.n > 0 or bool(self.more)

    def __contains__(self, p) -> bool:
        return 0 <= p - self.lo < self.n or (self.more is not None and p in self.more)

    def __iter__(self):
        return iter(self.above(None))

    def add(self, p: int) -> None:
        k = p - self.lo
        if 0 <= k < self.n or (self.more is not None and p in self.more):
            return
        if not self.n:  # no run yet (or an empty one): it starts here
            self.lo, self.n = p, 1
        elif k == self.n:
            self.n = k + 1
        elif self.more is None:
            self.more = (p,)
        elif type(self.more) is tuple and len(self.more) < self.SMALL:
            self.more += (p,)
        else:
            if type(self.more) is tuple:
                self.more = set(self.more)
            self.more.add(p)

    def update(self, ids) -> None:
        for p in ids:
            self.add(p)

    def max(self) -> int:
        """The largest ID (the set must not be empty)."""
        top = self.lo + self.n - 1 if self.n else None
        if self.more:
            m = max(self.more)
            return m if top is None or m > top else top
        assert top is not None, "max() of no packet IDs"
        return top

    def above(self, last) -> list:
        """The IDs greater than ``last`` (all of them when None), in increasing order."""
        lo = self.lo if last is None else max(self.lo, last + 1)
        out = list(range(lo, self.lo + self.n))
        if self.more:
            extra = [p for p in self.more if last is None or p > last]
            if extra:
                out = sorted(out + extra)
        return out


class _NoIds(PacketIds):
    """No packet IDs: the one empty :class:`PacketIds` every control direction starts with
    (two per direction, four per session, 56 bytes each), replaced by one of its own at the
    first ID; it cannot be changed."""

    __slots__ = ()

    def add(self, p: int) -> None:
        raise TypeError("the shared empty PacketIds cannot change")

    def __reduce__(self):  # pickled and copied as the one shared object
        return "NO_IDS"


#: see :class:`_NoIds`
NO_IDS = _NoIds()


#: what a session keeps of each direction of its control channel, in its own slots (the name
#: and ``_c`` for the client's direction, ``_s`` for the server's; :class:`CtlDir` reads them)
CTL_FIELDS = ("packets", "next_pid", "ooo", "retrans", "retrans_refs", "acks", "first_ts",
              "last_ts", "refs", "pids", "acked")


class CtlDir:
    """One direction of a session's control channel: a view of the session's own slots (issue
    20: a flood keeps thousands of sessions, and two objects of their own per session cost 350
    bytes with their tuple; the slots cost 176).  Made on each read (``Session.ctl``,
    ``Session.dir``), never kept; reading and writing its attributes reads and writes the
    session's.

    ``packets``, ``retrans``, ``acks``: control packets, retransmissions, packets carrying ACKs;
    ``next_pid``: the next packet ID in order (None before the first); ``ooo``: control payloads
    held out of order by packet ID (``StreamBounds.max_ooo`` of them and ``max_ooo_bytes`` at
    most; a dict made at the first one, None before) and ``ooo_bytes`` their bytes;
    ``retrans_refs``, ``refs``: frames of the retransmissions and of the first packets (at most
    MAX_REFS each): tuples, the shared empty one until the first; ``first_ts``, ``last_ts``;
    ``pids``: packet IDs seen (bounded by the handshake's size) and ``acked``, of those, the ones
    the peer acknowledged (ACK arrays, bounded): ``NO_IDS`` until the first."""

    __slots__ = ("_s",)
    #: 0 client, 1 server (the subclasses)
    d = 0

    def __init__(self, s):
        self._s = s

    @property
    def ooo_bytes(self) -> int:
        ooo = self.ooo
        return sum(map(len, ooo.values())) if ooo else 0

    def to_dict(self):
        return {"packets": self.packets, "retransmissions": self.retrans, "acks": self.acks,
                "first_ts": self.first_ts, "last_ts": self.last_ts,
                "retransmission_frames": [list(r) for r in self.retrans_refs]}


def _ctl_dir_class(d: int, suffix: str):
    ns = {"__slots__": (), "d": d}
    for name in CTL_FIELDS:
        slot = name + suffix

        def put(v, x, _slot=slot):
            setattr(v._s, _slot, x)

        # the reader in C (no Python frame per read: the control path reads a field or two
        # dozen times a packet)
        ns[name] = property(attrgetter("_s." + slot), put)
    return type(f"CtlDir{suffix}", (CtlDir,), ns)


#: the views of the client's and of the server's direction
_CTL = (_ctl_dir_class(0, "_c"), _ctl_dir_class(1, "_s"))
#: the slot names of each direction, in CTL_FIELDS' order
_SLOTS = (tuple(f + "_c" for f in CTL_FIELDS), tuple(f + "_s" for f in CTL_FIELDS))


class Session:
    __slots__ = ("index", "client_sid", "server_sid", "key_ids", "first_ts", "last_ts",
                 "client_resets", "server_resets", "reset_opcode", "tls", "data_c",
                 "data_s", "first_data_ts", "mid_session", "soft_resets", "encrypted", "undecoded",
                 "repeats") + tuple(f + sfx for sfx in ("_c", "_s") for f in CTL_FIELDS)

    def __init__(self, index, ts, mid_session=False):
        self.index = index
        self.client_sid = None
        self.server_sid = None
        #: the key IDs seen (0-7, the opcode byte's low 3 bits), one bit each
        self.key_ids = 0
        self.first_ts = ts
        self.last_ts = ts
        #: (ts, ref) of the hard resets of each side, at most MAX_REFS: tuples (as CtlDir.refs)
        self.client_resets = ()
        self.server_resets = ()
        self.reset_opcode = None
        # each direction of the control channel (CTL_FIELDS; CtlDir reads them)
        self.packets_c = self.packets_s = 0
        self.next_pid_c = self.next_pid_s = None
        self.ooo_c = self.ooo_s = None
        self.retrans_c = self.retrans_s = 0
        self.retrans_refs_c = self.retrans_refs_s = ()
        self.acks_c = self.acks_s = 0
        self.first_ts_c = self.first_ts_s = None
        self.last_ts_c = self.last_ts_s = None
        self.refs_c = self.refs_s = ()
        self.pids_c = self.pids_s = NO_IDS
        self.acked_c = self.acked_s = NO_IDS
        self.tls = None
        #: data packets from the client and from the server (ints; ``data`` reads them as a
        #: pair), and the time of each side's first: a tuple replaced when it changes
        self.data_c = self.data_s = 0
        self.first_data_ts = (None, None)
        self.mid_session = mid_session
        self.soft_resets = 0
        self.encrypted = False
        self.undecoded = 0
        #: control packets from the client since the server's last one (repeats of its flight)
        self.repeats = 0

    @property
    def ctl(self) -> tuple:
        """The two directions of the control channel, client's first (:class:`CtlDir` views)."""
        return (_CTL[0](self), _CTL[1](self))

    def dir(self, d: int) -> CtlDir:
        """Direction ``d`` (0 client) of the control channel (a :class:`CtlDir` view)."""
        return _CTL[d](self)

    @property
    def data(self) -> tuple:
        """Data packets (client to server, server to client)."""
        return (self.data_c, self.data_s)

    @property
    def answered(self) -> bool:
        """The server sent anything in this session."""
        return self.packets_s > 0 or self.data_s > 0

    @property
    def established(self) -> bool:
        return self.data_c > 0 and self.data_s > 0

    def unacked(self, d: int) -> list:
        """Packet IDs of direction ``d`` (0 client) sent after the last one the peer
        acknowledged, when the peer acknowledged any: the flight it never confirmed (empty with
        tls-crypt, whose ACK arrays are encrypted)."""
        acked = self.acked_s if d else self.acked_c
        if self.encrypted or not acked:
            return []
        return (self.pids_s if d else self.pids_c).above(acked.max())

    def to_dict(self):
        ctl = self.ctl
        return {
            "index": self.index,
            "client_session_id": f"{self.client_sid:016x}" if self.client_sid is not None else None,
            "server_session_id": f"{self.server_sid:016x}" if self.server_sid is not None else None,
            "reset": _ov.opcode_name(self.reset_opcode) if self.reset_opcode else None,
            "key_ids": [k for k in range(8) if self.key_ids >> k & 1],
            "first_ts": self.first_ts, "last_ts": self.last_ts,
            "client_resets": len(self.client_resets), "server_resets": len(self.server_resets),
            "client_control": ctl[0].to_dict(), "server_control": ctl[1].to_dict(),
            "data_packets": {"client_to_server": self.data_c, "server_to_client": self.data_s},
            "established": self.established, "mid_session": self.mid_session,
            "control_encrypted": self.encrypted,
            "tls": self.tls.to_dict() if self.tls is not None else None,
        }


class OpenVpnState:
    """Per tunnel (client <-> server:port)."""

    __slots__ = ("layout", "sessions", "dropped_sessions", "errors", "opcodes", "wkc", "held",
                 "skew", "bounds")

    def __init__(self, bounds=None):
        #: the tracker's StreamBounds: the control channel's out-of-order hold and TLS buffers
        self.bounds = bounds if bounds is not None else StreamBounds()
        self.layout = None
        self.sessions = []
        self.dropped_sessions = 0
        self.errors = 0
        self.opcodes = {}
        self.wkc = False
        #: per direction, a control packet waiting for a second one of its sender to decide the
        #: layout: ``(wrap_candidates, ts, ref, bytes, from_client)`` (see :func:`_resolve`)
        self.held = [None, None]
        #: per direction, the sender's clock minus the capture's, read from the net time of a
        #: hard reset (the start of its replay context): ``(seconds, ts, ref)``
        self.skew = [None, None]

    @property
    def current(self):
        return self.sessions[-1] if self.sessions else None

    def to_dict(self):
        return {"control_protection": _ov.layout_name(self.layout),
                "tls_crypt_v2": self.wkc,
                "clock_skew_s": {"client": _skew(self.skew[0]), "server": _skew(self.skew[1])},
                "opcodes": {_ov.opcode_name(k): v for k, v in sorted(self.opcodes.items())},
                "sessions": [s.to_dict() for s in self.sessions],
                "sessions_not_kept": self.dropped_sessions,
                # a packet still held at the end never had its layout confirmed
                "undecodable_packets": self.errors + sum(h is not None for h in self.held)}


#: the bytes of a session with nothing in its sets and buffers (the Session, its two CtlDir,
#: their empty sets and lists: ``sys.getsizeof`` summed, CPython 3.11-3.13), and of one packet
#: ID in a ``pids`` / ``acked`` set (the int and its share of the set's table).  Since the sets
#: are :class:`PacketIds` (session 9) a session weighs less (~1,320 bytes with its IDs in one
#: run, against 2,270-4,430 as sets of a few IDs): the estimate, hence the bound
#: ``Limits.vpn_max_session_bytes`` acts as before, is now an upper one (the more since session
#: 11: the control directions in the session's slots, ~430 bytes fresh)
SESSION_BASE_BYTES = 1400
SESSION_ID_BYTES = 64


def session_bytes(s: Session) -> int:
    """What session ``s`` holds, estimated without walking it (``Limits.vpn_max_session_bytes``):
    its fixed part, its control channels' packet-ID sets and held packets, its TLS buffers."""
    n = SESSION_BASE_BYTES
    for cd in s.ctl:
        n += SESSION_ID_BYTES * (len(cd.pids) + len(cd.acked)) + cd.ooo_bytes
    if s.tls is not None:
        for side in (s.tls.client, s.tls.server):
            n += len(side.buf) + len(side.hs)
    return n


def _skew(x):
    return None if x is None else round(x[0], 3)


def _new_session(st: OpenVpnState, ts, mid=False) -> Session:
    s = Session(len(st.sessions) + st.dropped_sessions, ts, mid)
    if len(st.sessions) >= MAX_SESSIONS:
        del st.sessions[1]  # keep the first for context
        st.dropped_sessions += 1
    st.sessions.append(s)
    return s


def _find(st: OpenVpnState, from_client: bool, c) -> Session | None:
    sid = c.session_id
    for s in reversed(st.sessions):
        if from_client and s.client_sid == sid:
            return s
        if not from_client and s.server_sid == sid:
            return s
    if not from_client:
        rsid = c.remote_session_id
        for s in reversed(st.sessions):
            if s.server_sid is None and (rsid is None or rsid == s.client_sid):
                return s
    return None


def handle(t, st: OpenVpnState, from_client: bool, ts, ref, data, off, end) -> None:
    """One OpenVPN packet ``data[off:end]`` of tunnel ``t`` (a
    :class:`pcapvpn.track.vpn.VpnTunnel`)."""
    d = 0 if from_client else 1
    op, key_id = _ov.opcode(data, off)
    st.opcodes[op] = st.opcodes.get(op, 0) + 1
    if op == _ov.P_DATA_V1 or op == _ov.P_DATA_V2:
        t.data_packet(d, ts, ref, end - off)
        s = st.current
        if s is not None:
            if d == 0:
                s.data_c += 1
            else:
                s.data_s += 1
            s.last_ts = ts
            f = s.first_data_ts
            if f[d] is None:
                s.first_data_ts = (ts, f[1]) if d == 0 else (f[0], ts)
            s.key_ids |= 1 << key_id
        return
    t.control_packet(d, ts, ref)
    layout = st.layout
    c = None
    if layout is not None:
        try:
            c = _ov.parse_control(data, off, end, layout)
        except DissectError:
            c = None
    if c is None:
        lay, held = _resolve(st, d, ts, ref, data, off, end)
        if lay is not None:
            try:
                c = _ov.parse_control(data, off, end, lay)
                st.layout = lay
            except DissectError:
                c = None
            for h in held:
                _held_control(t, st, h)
        elif held == "held":
            return
    if c is None:
        st.errors += 1
        s = st.current
        if s is not None:
            s.undecoded += 1
        return
    _control(t, st, from_client, ts, ref, data, off, end, c)


def _resolve(st: OpenVpnState, d: int, ts, ref, data, off, end):
    """The layout of a control packet when the known one (if any) does not parse it.

    Returns ``(layout, held)``: ``held`` lists earlier packets (of either sender) waiting for the
    layout, to be handled first under it.  A hard reset, or a packet with only a plain reading,
    decides alone (:func:`dissect.vpn.openvpn.detect_layout`).  A packet with wrapped readings
    (tls-crypt / tls-auth) is held until a second packet of the same sender confirms one of them
    (same session ID and net time, a higher replay packet ID): then ``(layout, held)``.  Two
    packets that read plainly and share no wrapped context are plain.  ``(None, "held")``: this
    packet is held; ``(None, [])``: it is undecodable.
    """
    lay = _ov.detect_layout(data, off, end)
    mine = st.held[d]
    if lay is None:
        cands = _ov.wrap_candidates(data, off, end)
        if mine is not None:
            lay = next((a[0] for a in mine[0] for b in cands if _ov.same_context(a, b)), None)
            if lay is None and _parses(mine[3], _ov.PLAIN) and \
                    _parses(data[off:end], _ov.PLAIN):
                lay = _ov.PLAIN
        if lay is None:
            if not cands:
                return None, []
            if mine is not None:
                _held_undecodable(st)
            st.held[d] = (cands, ts, ref, bytes(data[off:end]), d == 0)
            return None, "held"
    held = sorted((h for h in st.held if h is not None), key=lambda h: h[1])
    st.held = [None, None]
    return lay, held


def _parses(buf, layout) -> bool:
    try:
        _ov.parse_control(buf, 0, len(buf), layout)
    except DissectError:
        return False
    return True


def _held_undecodable(st: OpenVpnState) -> None:
    st.errors += 1
    s = st.current
    if s is not None:
        s.undecoded += 1


def _held_control(t, st: OpenVpnState, h) -> None:
    """Handle a held control packet ``h`` under the layout now known (its opcode and packet
    counts were taken when it arrived)."""
    _cands, ts, ref, buf, from_client = h
    try:
        c = _ov.parse_control(buf, 0, len(buf), st.layout)
    except DissectError:
        _held_undecodable(st)
        return
    _control(t, st, from_client, ts, ref, buf, 0, len(buf), c)


def _control(t, st: OpenVpnState, from_client: bool, ts, ref, data, off, end, c) -> None:
    """A control packet parsed as ``c``: sessions, the reliability layer, the TLS records."""
    d = 0 if from_client else 1
    op = c.opcode
    if c.net_time is not None and st.skew[d] is None and \
            (op in _ov.CLIENT_RESETS or op in _ov.SERVER_RESETS) and \
            c.replay_id is not None and c.replay_id <= _ov.RESET_MAX_REPLAY:
        st.skew[d] = (c.net_time - ts, ts, ref)
    if op in _ov.CLIENT_RESETS and from_client:
        s = _find(st, True, c)
        if s is None:
            s = _new_session(st, ts)
            s.client_sid = c.session_id
            s.reset_opcode = op
        if s.client_resets and ts - s.client_resets[-1][0] <= st.bounds.copy_window:
            pass  # a mirror's copy of the reset just seen (OpenVPN re-sends after a second)
        elif len(s.client_resets) < MAX_REFS:
            s.client_resets += ((ts, ref),)
        if op == _ov.P_CONTROL_HARD_RESET_CLIENT_V3:
            st.wkc = True
    else:
        s = _find(st, from_client, c)
        if s is None:
            s = _new_session(st, ts, mid=op not in _ov.SERVER_RESETS)
            if from_client:
                s.client_sid = c.session_id
        if not from_client and s.server_sid is None:
            s.server_sid = c.session_id
        if op in _ov.SERVER_RESETS and not from_client:
            if s.server_resets and ts - s.server_resets[-1][0] <= st.bounds.copy_window:
                pass  # a mirror's copy of the reset just seen
            elif len(s.server_resets) < MAX_REFS:
                s.server_resets += ((ts, ref),)
        if op == _ov.P_CONTROL_SOFT_RESET_V1:
            s.soft_resets += 1
        if op == _ov.P_CONTROL_WKC_V1:
            st.wkc = True
    s.last_ts = ts
    s.key_ids |= 1 << c.key_id
    if c.encrypted:
        s.encrypted = True
    # this direction's slots read and written by name (``CtlDir`` is for the readers: a
    # property call per access would cost the control path ~2 us a packet)
    (k_packets, k_next, _k_ooo, k_retrans, k_rrefs, k_acks, k_first, k_last, k_refs, k_pids,
     _k_acked) = _SLOTS[d]
    setattr(s, k_packets, getattr(s, k_packets) + 1)
    if from_client:
        s.repeats += 1
    else:
        s.repeats = 0
    if getattr(s, k_first) is None:
        setattr(s, k_first, ts)
    prev = getattr(s, k_last)
    setattr(s, k_last, ts)
    refs = getattr(s, k_refs)
    if len(refs) < MAX_REFS:
        setattr(s, k_refs, refs + (ref,))
    if c.acks:
        setattr(s, k_acks, getattr(s, k_acks) + 1)
        k_peer = _SLOTS[1 - d][10]  # the peer direction's acked
        acked = getattr(s, k_peer)
        if acked is NO_IDS:
            acked = PacketIds()
            setattr(s, k_peer, acked)
        if len(acked) < 4096:
            acked.update(c.acks)
    if c.encrypted:
        # tls-crypt: the message packet ID is encrypted; the replay ID (one per packet sent,
        # retransmissions included) cannot tell a retransmission.  Identical sizes from the same
        # side within a session are the best proxy: a hard reset sent again is one.
        if op in _ov.CLIENT_RESETS and len(s.client_resets) > 1 and from_client:
            _retransmission(s, k_retrans, k_rrefs, ref)
        return
    pid = c.packet_id
    if pid is None:
        return  # P_ACK_V1
    nxt = getattr(s, k_next)
    if nxt is None:
        nxt = pid
        setattr(s, k_next, pid)
    pids = getattr(s, k_pids)
    if pid in pids:
        if prev is not None and ts - prev <= st.bounds.copy_window:
            return  # a mirror's copy of the packet just seen, not a retransmission
        _retransmission(s, k_retrans, k_rrefs, ref)
        return
    if len(pids) < 4096:
        if pids is NO_IDS:
            pids = PacketIds()
            setattr(s, k_pids, pids)
        pids.add(pid)
    cd = _CTL[d](s)
    if op not in (_ov.P_CONTROL_V1, _ov.P_CONTROL_WKC_V1) or c.payload_end <= c.payload_off:
        if pid == nxt:
            setattr(s, k_next, pid + 1)
            _drain(st, s, d, cd, ts, ref)
        elif pid > nxt:
            _hold(st.bounds, cd, pid, b"", ts, ref)
        return
    payload = bytes(data[c.payload_off:c.payload_end])
    if pid == nxt:
        _tls_feed(st, s, d, payload, ts, ref)
        setattr(s, k_next, pid + 1)
        _drain(st, s, d, cd, ts, ref)
    elif pid > nxt:
        _hold(st.bounds, cd, pid, payload, ts, ref)


def _retransmission(s: Session, k_retrans: str, k_rrefs: str, ref) -> None:
    """A control packet sent again: counted, its frame kept among the first MAX_REFS."""
    setattr(s, k_retrans, getattr(s, k_retrans) + 1)
    rrefs = getattr(s, k_rrefs)
    if len(rrefs) < MAX_REFS:
        setattr(s, k_rrefs, rrefs + (ref,))


def _hold(b: StreamBounds, cd: CtlDir, pid: int, payload: bytes, ts, ref) -> None:
    """Keep a control packet that came before a missing packet ID, within the bounds (beyond
    them it is counted and not kept: the TLS stream then stops at the hole)."""
    ooo = cd.ooo
    if ooo is None:
        ooo = cd.ooo = {}
    held = len(ooo[pid]) if pid in ooo else 0  # the same packet ID again: replaced
    if len(ooo) >= b.max_ooo:
        b.drop("tcp_max_ooo", ref, ts)
    elif cd.ooo_bytes - held + len(payload) > b.max_ooo_bytes:
        b.drop("tcp_max_ooo_bytes", ref, ts)
    else:
        ooo[pid] = payload



def _drain(st: OpenVpnState, s, d, cd, ts, ref):
    while cd.ooo:
        p = cd.ooo.pop(cd.next_pid, None)
        if p is None:
            break
        if p:
            _tls_feed(st, s, d, p, ts, ref)
        cd.next_pid += 1


def _tls_feed(st: OpenVpnState, s: Session, d: int, payload: bytes, ts, ref):
    if s.tls is None:
        s.tls = TlsConversation(bounds=st.bounds)
    s.tls.side(d == 0).feed(payload, ts, ref)
