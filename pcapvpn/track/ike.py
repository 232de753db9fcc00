"""IKE SAs and exchanges, reconstructed from IKE messages (IKEv1 and IKEv2).

IKEv2 (RFC 7296 §2.1-2.2): a request and its response share the Message ID; each peer has its own
Message ID space once the SA exists, so an exchange is keyed by (IKE SA, requester, Message ID).
The requester is the original initiator when exactly one of the I and R flags is set.
IKE_SA_INIT is keyed by the initiator's SPI before the responder's is known; a COOKIE or
INVALID_KE_PAYLOAD retry (RFC 7296 §2.6, §1.2) reuses Message ID 0 with new content and becomes a
new exchange of the same SA (or, when the initiator picked a new SPI, a new SA linked with
``retry_of``).

IKEv1 (RFC 2409): Main Mode (6 messages) and Aggressive Mode (3) use Message ID 0; Quick Mode (3),
Transaction (mode-config/XAUTH) and Informational exchanges use their own non-zero Message ID.
Messages alternate between the two peers; the step (MM1..MM6, AM1..AM3, QM1..QM3) is counted per
exchange; a responder re-sends its last message (MM2/MM4/QM2) when the next one does not come.

A retransmission is the same message (byte for byte) re-sent by the same sender after a delay; a
copy closer than ``duplicate_window`` is a capture duplicate (the mirror saw it twice) and is never
a retransmission — IP ID cannot decide it (IPv6 has none; Linux sends ID 0 on DF UDP).
"""

from __future__ import annotations

import hashlib

from dissect.vpn import ike as _ike
from dissect.vpn import ikev1 as _v1
from dissect.vpn import ikev2 as _v2
from dissect.vpn.errors import DissectError

# IKEv2 exchange types (RFC 7296 §3.1, RFC 9242, RFC 5723)
IKE_SA_INIT = 34
IKE_AUTH = 35
CREATE_CHILD_SA = 36
INFORMATIONAL = 37
IKE_INTERMEDIATE = 43
# IKEv1 (RFC 2408 §3.1, RFC 2409)
V1_MAIN = 2
V1_AGGRESSIVE = 4
V1_INFO = 5
V1_TRANSACTION = 6
V1_QUICK = 32

V1_STEP_PREFIX = {V1_MAIN: "MM", V1_AGGRESSIVE: "AM", V1_QUICK: "QM", V1_TRANSACTION: "TM"}
V1_STEPS = {V1_MAIN: 6, V1_AGGRESSIVE: 3, V1_QUICK: 3}


def spi_hex(b: bytes) -> str:
    return bytes(b).hex()


class IkeMsg:
    """One IKE message as seen on the wire."""

    __slots__ = (
        "n", "ref", "frames", "ts", "ipver", "src", "dst", "sport", "dport", "transport",
        "version", "exch", "msgid", "flags", "ispi", "rspi", "length", "size",
        "is_response", "from_initiator", "payload_types", "notifies", "sk_next", "skf",
        "encrypted", "digest", "step", "retransmit_of", "duplicate_of", "error", "truncated",
        "msg", "ke_group", "proposals", "vendor_ids", "nat_d", "deletes", "exchange",
        # with --keys (pcapvpn.decrypt): status ("ok", "unverified", "icv_failed", "malformed",
        # "no_keys", ...), why, the key line used, and what the payloads say (describe_inner)
        "decrypt_status", "decrypt_detail", "key_origin", "inner",
    )

    def __init__(self):
        self.retransmit_of = None
        self.duplicate_of = None
        self.step = None
        self.exchange = None
        self.decrypt_status = None
        self.decrypt_detail = None
        self.key_origin = None
        self.inner = None

    @property
    def copy(self) -> bool:
        """A retransmission or a capture duplicate (not a new message)."""
        return self.retransmit_of is not None or self.duplicate_of is not None

    def error_notifies(self) -> list[int]:
        return [t for t, _spi, _d in self.notifies if 0 < t < 16384]

    def has_notify(self, ntype: int) -> bool:
        return any(t == ntype for t, _s, _d in self.notifies)

    def notify_data(self, ntype: int):
        for t, _s, d in self.notifies:
            if t == ntype:
                return d
        return None


class Exchange:
    """A request and its response(s) (IKEv2), or the messages of one IKEv1 exchange."""

    __slots__ = ("sa", "version", "exch", "msgid", "requester", "msgs", "index", "closed")

    def __init__(self, sa, version, exch, msgid, requester, index):
        self.sa = sa
        self.version = version
        self.exch = exch
        self.msgid = msgid
        self.requester = requester  # "initiator" | "responder" (of the IKE SA)
        self.msgs: list[IkeMsg] = []
        self.index = index
        self.closed = False

    # IKEv2 views
    @property
    def requests(self) -> list[IkeMsg]:
        return [m for m in self.msgs if not m.is_response]

    @property
    def responses(self) -> list[IkeMsg]:
        return [m for m in self.msgs if m.is_response]

    def originals(self) -> list[IkeMsg]:
        """Messages that are neither retransmissions nor capture duplicates."""
        return [m for m in self.msgs if not m.copy]

    @property
    def first(self) -> IkeMsg:
        return self.msgs[0]

    @property
    def answered(self) -> bool:
        if self.version == 2:
            return any(m.is_response for m in self.msgs)
        # IKEv1: the exchange got past its first message from the other side
        return self.last_step >= 2 or self.exch == V1_INFO

    @property
    def last_step(self) -> int:
        steps = [m.step for m in self.msgs if isinstance(m.step, int)]
        return max(steps) if steps else 0

    def retransmissions(self) -> list[IkeMsg]:
        return [m for m in self.msgs if m.retransmit_of is not None]

    def duplicates(self) -> list[IkeMsg]:
        return [m for m in self.msgs if m.duplicate_of is not None]


class IkeSA:
    """One IKE SA (one SPI pair), IKEv1 or IKEv2."""

    __slots__ = (
        "id", "version", "ispi", "rspi", "initiator", "responder", "messages", "exchanges",
        "_open", "first_ts", "last_ts", "retry_of", "retried_by", "rekey_of", "rekeyed_by",
        "mid_session", "deleted_ts", "deleted_by", "endpoints", "_digests", "nat",
        "initiator_known", "crypto",
    )

    def __init__(self, version, ispi, rspi):
        self.version = version
        self.ispi = ispi
        self.rspi = rspi
        self.id = ""
        self.initiator = None  # (ipver, addr, port)
        self.responder = None
        self.initiator_known = False
        self.messages: list[IkeMsg] = []
        self.exchanges: list[Exchange] = []
        self._open: dict = {}
        self.first_ts = None
        self.last_ts = None
        self.retry_of = None
        self.retried_by = None
        self.rekey_of = None
        self.rekeyed_by = None
        self.mid_session = False
        self.deleted_ts = None
        self.deleted_by = None
        self.endpoints: dict = {}  # (src, sport, dst, dport, transport) -> first n
        self._digests: dict = {}  # (digest, src, sport) -> last IkeMsg with it
        self.nat = None
        self.crypto = None  # pcapvpn.decrypt.Ikev2Decryptor / Ikev1Decryptor with --keys

    @property
    def peers(self) -> tuple:
        return (self.initiator, self.responder)

    def find_exchanges(self, exch) -> list[Exchange]:
        return [x for x in self.exchanges if x.exch == exch]

    @property
    def established(self) -> bool:
        """IKEv2: an IKE_AUTH response that does not start with a Notify (keyless) and carries no
        cleartext error; IKEv1: Main Mode reached MM6 / Aggressive AM3, or Quick Mode seen."""
        if self.version == 2:
            for x in self.exchanges:
                if x.exch == IKE_AUTH:
                    for m in x.responses:
                        if m.sk_next not in (None, _v2.N) and not m.error_notifies():
                            return True
                        if m.sk_next is None and m.encrypted is False and not m.error_notifies() \
                                and _v2.IDR in m.payload_types:
                            return True
            # an SA first seen mid-session, or created by an IKE SA rekey, that carries protected
            # traffic is established
            return (self.mid_session or self.rekey_of is not None) and any(
                m.encrypted for m in self.messages)
        for x in self.exchanges:
            if x.exch == V1_MAIN and x.last_step >= 6:
                return True
            if x.exch == V1_AGGRESSIVE and x.last_step >= 3:
                return True
            if x.exch == V1_QUICK:
                return True
        return self.mid_session and any(m.encrypted for m in self.messages)


class IkeTracker:
    """Sink for IKE events; builds IKE SAs and exchanges."""

    def __init__(self, thresholds, names=None, keys=None):
        self.th = thresholds
        self.names = names or []  # file names, by file index
        #: pcapvpn.keys.KeyStore (--keys) or None: then nothing is decrypted
        self.keys = keys or None
        self.sas: list[IkeSA] = []
        self._by_ispi: dict = {}  # (version, ispi) -> [IkeSA]
        self.messages = 0
        self.parse_errors = []  # (ref, reason)
        #: IKE datagrams whose header did not parse (not tracked; counted and listed as errors)
        self.header_errors = 0
        self._n = 0

    # -- event ---------------------------------------------------------------------------------

    def ike(self, ref, ts, ipver, src, dst, sport, dport, transport, raw, frames):
        try:
            msg = _ike.parse_message(raw)
        except DissectError as e:
            self.header_errors += 1
            self.parse_errors.append((ref, "IKE: " + e.reason))
            return None
        if msg.length < _ike.HEADER_LEN:
            # RFC 7296 §3.1 / RFC 2408 §3.1: the Length includes the header; a smaller one is not
            # an IKE message we can place (do not invent an exchange from it)
            self.header_errors += 1
            self.parse_errors.append((ref, f"IKE: Length field {msg.length} below the 28-byte "
                                           f"header"))
            return None
        self._n += 1
        m = IkeMsg()
        m.n = self._n
        m.ref = ref
        m.frames = frames
        m.ts = ts
        m.ipver = ipver
        m.src = src
        m.dst = dst
        m.sport = sport
        m.dport = dport
        m.transport = transport
        m.version = msg.major
        m.exch = msg.exch
        m.msgid = msg.msgid
        m.flags = msg.flags
        m.ispi = msg.ispi
        m.rspi = msg.rspi
        m.length = msg.length
        m.size = len(raw)
        m.truncated = msg.truncated
        m.error = msg.errors[0][0] if msg.errors else None
        if msg.errors:
            self.parse_errors.append((ref, "IKE: " + msg.errors[0][0]))
        m.msg = msg
        m.payload_types = msg.payload_types
        m.digest = hashlib.blake2b(raw, digest_size=12).digest()
        self._extract(m, msg)
        self.messages += 1
        sa = self._place(m)
        if self.keys is not None:
            self._decrypt(sa, m)
        return m

    def _extract(self, m: IkeMsg, msg) -> None:
        notifies = []
        vids = []
        nat_d = []
        deletes = []
        proposals = None
        ke_group = None
        sk_next = None
        skf = None
        if msg.major == 2:
            m.is_response = bool(msg.flags & _ike.FLAG_V2_RESPONSE)
            m.from_initiator = bool(msg.flags & _ike.FLAG_V2_INITIATOR)
            for p in msg.payloads:
                if isinstance(p, _ike.RawPayload):
                    continue  # a body that did not parse: counted as a parse error, not used
                t = p.type
                if t == _v2.N:
                    notifies.append((p.notify_type, p.spi, p.data))
                    if p.notify_type in (_v2.NT_NAT_DETECTION_SOURCE_IP,
                                         _v2.NT_NAT_DETECTION_DESTINATION_IP):
                        nat_d.append((p.notify_type, p.data))
                elif t == _v2.SA_PAYLOAD:
                    proposals = p.proposals
                elif t == _v2.KE:
                    ke_group = p.group
                elif t == _v2.V:
                    vids.append(p.data)
                elif t == _v2.D:
                    deletes.append((p.protocol, list(p.spis)))
                elif t == _v2.SK:
                    sk_next = p.next_payload
                elif t == _v2.SKF:
                    skf = (p.fragment_number, p.total_fragments)
                    if p.fragment_number == 1:
                        sk_next = p.next_payload
            m.encrypted = sk_next is not None or skf is not None
        else:
            m.is_response = None  # decided by position in the exchange
            m.from_initiator = None
            m.encrypted = bool(msg.flags & _ike.FLAG_V1_ENCRYPTED)
            for p in msg.payloads:
                if isinstance(p, _ike.RawPayload):
                    continue
                t = p.type
                if t == _v1.N:
                    notifies.append((p.notify_type, p.spi, p.data))
                elif t == _v1.SA_PAYLOAD:
                    proposals = p.proposals
                elif t == _v1.VID:
                    vids.append(p.data)
                elif t == _v1.NAT_D or t == _v1.NAT_D_DRAFT or (
                        t == _v1.NAT_D_OLD and msg.exch in (V1_MAIN, V1_AGGRESSIVE)):
                    nat_d.append((t, p.data))
                elif t == _v1.D:
                    deletes.append((p.protocol, list(p.spis)))
                elif t == _v1.KE:
                    ke_group = None
        m.notifies = notifies
        m.vendor_ids = vids
        m.nat_d = nat_d
        m.deletes = deletes
        m.proposals = proposals
        m.ke_group = ke_group
        m.sk_next = sk_next
        m.skf = skf

    # -- SA lookup -----------------------------------------------------------------------------

    def _sa_for(self, m: IkeMsg) -> IkeSA:
        key = (m.version, m.ispi)
        cands = self._by_ispi.get(key)
        zero = b"\x00" * 8
        if cands:
            # same SPI pair, or the responder SPI not known yet on one side
            for sa in reversed(cands):
                if sa.rspi == m.rspi:
                    return sa
            for sa in reversed(cands):
                if sa.rspi == zero and m.rspi != zero:
                    sa.rspi = m.rspi
                    self._set_id(sa)
                    return sa
                if m.rspi == zero:
                    # e.g. an IKE_SA_INIT retry after COOKIE, or an INFORMATIONAL with SPIr 0
                    return sa
        sa = IkeSA(m.version, m.ispi, m.rspi)
        self._set_id(sa)
        self.sas.append(sa)
        self._by_ispi.setdefault(key, []).append(sa)
        return sa

    @staticmethod
    def _set_id(sa: IkeSA) -> None:
        sa.id = f"ikev{sa.version}:{spi_hex(sa.ispi)}:{spi_hex(sa.rspi)}"

    # -- placing a message ---------------------------------------------------------------------

    def _place(self, m: IkeMsg) -> None:
        sa = self._sa_for(m)
        if sa.first_ts is None:
            sa.first_ts = m.ts
            self._first_message(sa, m)
        sa.last_ts = m.ts
        sa.messages.append(m)
        ep = (m.src, m.sport, m.dst, m.dport, m.transport)
        sa.endpoints.setdefault(ep, m.n)
        self._mark_copy(sa, m)
        if m.version == 2:
            self._place_v2(sa, m)
        else:
            self._place_v1(sa, m)
        return sa

    def _decrypt(self, sa: IkeSA, m: IkeMsg) -> None:
        """With keys: decrypt SK/SKF (IKEv2) or E-flag (IKEv1) messages and describe their
        payloads on ``m``; IKEv1 SAs also learn the phase-1 cipher, hash and KE values from the
        cleartext messages.  Copies take the original's result (IKEv1 IVs must not advance)."""
        from pcapvpn import decrypt as _dec

        orig_n = m.retransmit_of or m.duplicate_of
        if orig_n is not None:
            orig = next((o for o in reversed(sa.messages) if o.n == orig_n), None)
            if orig is not None:
                m.decrypt_status, m.decrypt_detail = orig.decrypt_status, orig.decrypt_detail
                m.key_origin, m.inner = orig.key_origin, orig.inner
                return
        if sa.version == 2:
            if not m.encrypted:
                return
            if sa.crypto is None:
                keys = self.keys.ikev2_for(m.ispi, m.rspi)
                if not keys:
                    m.decrypt_status = "no_keys"
                    return
                sa.crypto = _dec.Ikev2Decryptor(keys)
            res = sa.crypto.message(m)
        else:
            if sa.crypto is None:
                keys = self.keys.ikev1_for(m.ispi)
                if not keys:
                    if m.encrypted:
                        m.decrypt_status = "no_keys"
                    return
                sa.crypto = _dec.Ikev1Decryptor(keys)
            role = self._role_of_sender(sa, m)
            if not m.encrypted:
                sa.crypto.learn(m, role)
                return
            res = sa.crypto.message(m, role)
        status, detail, origin, payloads, first, complete = res
        m.decrypt_status = status
        m.decrypt_detail = detail or None
        m.key_origin = origin
        if payloads is not None and complete:
            m.inner = _dec.describe_inner(m.version, payloads, first)

    def _first_message(self, sa: IkeSA, m: IkeMsg) -> None:
        a = (m.ipver, m.src, m.sport)
        b = (m.ipver, m.dst, m.dport)
        if m.version == 2:
            if m.from_initiator:
                sa.initiator, sa.responder = a, b
            else:
                sa.initiator, sa.responder = b, a
            sa.initiator_known = True
            if m.exch != IKE_SA_INIT:
                sa.mid_session = True
            else:
                self._link_retry(sa, m)
        else:
            # IKEv1 has no I flag: the sender of the first message with a zero responder cookie
            # is the initiator; otherwise the first sender is assumed to be (mid-session).
            sa.initiator, sa.responder = a, b
            sa.initiator_known = m.rspi == b"\x00" * 8
            if not (m.exch in (V1_MAIN, V1_AGGRESSIVE) and sa.initiator_known):
                sa.mid_session = True

    def _link_retry(self, sa: IkeSA, m: IkeMsg) -> None:
        """A new IKE_SA_INIT right after an IKE_SA_INIT answered with COOKIE or INVALID_KE
        between the same peers is the initiator's retry with a new SPI; so is one over TCP after
        an IKE_SA_INIT over UDP that got no answer (RFC 9329 §1: TCP is the fallback when IKE
        cannot be negotiated over UDP)."""
        for old in reversed(self.sas):
            if old is sa or old.version != 2 or old.retried_by is not None:
                continue
            if old.initiator[1] != m.src or old.responder[1] != m.dst:
                continue
            if m.ts - (old.last_ts or m.ts) > 60:
                break
            for x in old.exchanges:
                if x.exch == IKE_SA_INIT and (any(
                        r.has_notify(_v2.NT_COOKIE) or r.has_notify(_v2.NT_INVALID_KE_PAYLOAD)
                        for r in x.responses) or (
                        m.transport == "tcp" and not x.responses
                        and all(q.transport == "udp" for q in x.requests))):
                    old.retried_by = sa.id
                    sa.retry_of = old.id
                    return

    def _mark_copy(self, sa: IkeSA, m: IkeMsg) -> None:
        """Same bytes, same sender and receiver: a capture duplicate when closer than
        ``duplicate_window`` to the previous copy, else a retransmission of the first one."""
        key = (m.digest, m.src, m.sport, m.dst, m.dport)
        seen = sa._digests.get(key)
        if seen is None:
            sa._digests[key] = (m, m)
            return
        orig, prev = seen
        sa._digests[key] = (orig, m)
        if m.ts - prev.ts < self.th.duplicate_window:
            m.duplicate_of = prev.n if prev.duplicate_of is None else prev.duplicate_of
        else:
            m.retransmit_of = orig.n

    def _role_of_sender(self, sa: IkeSA, m: IkeMsg) -> str:
        if m.version == 2:
            return "initiator" if m.from_initiator else "responder"
        if sa.initiator and (m.src, m.sport) == (sa.initiator[1], sa.initiator[2]):
            return "initiator"
        if sa.initiator and m.src == sa.initiator[1] and m.src != sa.responder[1]:
            return "initiator"  # NAT-T float changed the port
        return "responder"

    def _new_exchange(self, sa, exch, msgid, requester) -> Exchange:
        x = Exchange(sa, sa.version, exch, msgid, requester, len(sa.exchanges))
        sa.exchanges.append(x)
        return x

    def _place_v2(self, sa: IkeSA, m: IkeMsg) -> None:
        requester = "initiator" if (m.from_initiator != m.is_response) else "responder"
        key = (requester, m.msgid)
        x = sa._open.get(key)
        if m.duplicate_of is not None or m.retransmit_of is not None:
            if x is None:
                x = self._new_exchange(sa, m.exch, m.msgid, requester)
                sa._open[key] = x
            x.msgs.append(m)
            m.exchange = x.index
            m.step = "response" if m.is_response else "request"
            return
        if x is not None and not m.is_response and (x.answered or x.exch != m.exch):
            # a new request with the same Message ID after the old one was answered: an
            # IKE_SA_INIT retry (COOKIE / INVALID_KE) or a Message ID reused after a restart
            x = None
        if x is None:
            x = self._new_exchange(sa, m.exch, m.msgid, requester)
            sa._open[key] = x
        x.msgs.append(m)
        m.exchange = x.index
        m.step = "response" if m.is_response else "request"
        if m.exch == INFORMATIONAL and m.sk_next == _v2.D and not m.is_response:
            # keyless: an INFORMATIONAL request whose first inner payload is a Delete
            # (RFC 7296 §3.14); it deletes this IKE SA or a child SA — unknown without keys.
            pass

    def _place_v1(self, sa: IkeSA, m: IkeMsg) -> None:
        exch = m.exch
        sender = self._role_of_sender(sa, m)
        if exch in (V1_MAIN, V1_AGGRESSIVE):
            key = ("phase1", 0)
        else:
            key = (exch, m.msgid)
        x = sa._open.get(key)
        if x is None or (exch == V1_INFO):
            requester = sender
            x = self._new_exchange(sa, exch, m.msgid, requester)
            sa._open[key] = x
        x.msgs.append(m)
        m.exchange = x.index
        if m.copy:
            orig = next((o for o in x.msgs if o.n == (m.retransmit_of or m.duplicate_of)), None)
            m.step = orig.step if orig is not None else None
            m.is_response = orig.is_response if orig is not None else sender != x.requester
            return
        if exch == V1_INFO:
            m.step = 1
            m.is_response = False
            return
        last = x.last_step
        # steps alternate: odd from the exchange's initiator, even from the responder
        expected_sender = x.requester if (last + 1) % 2 == 1 else \
            ("responder" if x.requester == "initiator" else "initiator")
        if sender == expected_sender:
            m.step = last + 1
        else:
            # same sender again with different bytes: a re-sent message of the same step
            m.step = last if last else 1
        m.is_response = sender != x.requester

    # -- end -----------------------------------------------------------------------------------

    def finish(self) -> None:
        self.link_rekeys()
        for sa in self.sas:
            sa._digests = {}
            sa._open = {}

    def link_rekeys(self) -> None:
        """IKEv2 IKE SA rekey (RFC 7296 §1.3.2, §2.18): a CREATE_CHILD_SA on the old SA, then a
        new SPI pair talking without any IKE_SA_INIT, then a Delete on the old SA.  The new SA is
        linked to the old one (``rekey_of`` / ``rekeyed_by``) and is not "mid-session"."""
        for new in self.sas:
            if new.version != 2 or not new.messages or new.rekey_of is not None:
                continue
            if new.messages[0].exch == IKE_SA_INIT:
                continue
            t0 = new.first_ts
            peers = {new.initiator[1], new.responder[1]}
            best = None
            for old in self.sas:
                if old is new or old.version != 2 or old.rekeyed_by is not None:
                    continue
                if {old.initiator[1], old.responder[1]} != peers:
                    continue
                if old.last_ts is not None and old.last_ts > t0 + 1.0:
                    continue  # the old SA still talks once the new one exists: not its successor
                for x in old.exchanges:
                    if x.exch != CREATE_CHILD_SA or not x.answered:
                        continue
                    resp_ts = x.responses[0].ts
                    # the new SA may stay silent until its first own exchange (a child rekey,
                    # DPD): bound the wait by an IKE lifetime's worth, not by seconds
                    if resp_ts <= t0 + 0.001 and t0 - resp_ts <= 3600.0:
                        if best is None or resp_ts > best[0]:
                            best = (resp_ts, old)
            if best is not None:
                old = best[1]
                new.rekey_of = old.id
                old.rekeyed_by = new.id
                new.mid_session = False

    # -- bounded memory (live mode) --------------------------------------------------------------

    #: parse errors kept for the report once :meth:`remove` trims them (live mode)
    MAX_PARSE_ERRORS = 1000

    def remove(self, sas) -> int:
        """Forget the IKE SAs ``sas`` (live mode's expiry and eviction: ``pcapvpn.live``); their
        messages go with them.  Also trims ``parse_errors`` to the last ``MAX_PARSE_ERRORS``.
        Returns the number removed."""
        gone = {id(sa) for sa in sas}
        if not gone:
            return 0
        before = len(self.sas)
        self.sas = [sa for sa in self.sas if id(sa) not in gone]
        for key in [k for k, v in self._by_ispi.items() if any(id(sa) in gone for sa in v)]:
            left = [sa for sa in self._by_ispi[key] if id(sa) not in gone]
            if left:
                self._by_ispi[key] = left
            else:
                del self._by_ispi[key]
        if len(self.parse_errors) > self.MAX_PARSE_ERRORS:
            del self.parse_errors[:-self.MAX_PARSE_ERRORS]
        return before - len(self.sas)
