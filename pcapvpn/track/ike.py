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

from collections import Counter
from bisect import bisect_right, insort

from dissect.vpn import ike as _ike
from dissect.vpn.ip import Port
from dissect.vpn.registry import PRIVATE_EXCHANGES, ExchangeType, NotifyV2, PayloadV1, PayloadV2
from pcapvpn.names import Role
from pcapvpn.track.ike_sa import Exchange, IkeMsg, IkeSA, _by_n, spi_hex
from pcapvpn.track.nat import note_endpoint

def _udp_unanswered(sa) -> bool:
    """An IKE_SA_INIT of ``sa`` went over UDP only and got no answer (so far)."""
    return any(x.exch == ExchangeType.IKE_SA_INIT and not x.n_responses
               and all(q.transport == "udp" for q in x.msgs) for x in sa.exchanges)


def _creation(sa) -> int:
    """Creation order of IKE SAs: the number of their first message."""
    return sa.messages[0].n


def _v1_phase1_answer(m) -> bool:
    """An IKEv1 Main or Aggressive Mode message that can only be the responder's second
    message: the responder cookie is set and it carries an SA payload in the clear."""
    return (m.exch in (ExchangeType.MAIN_MODE, ExchangeType.AGGRESSIVE) and not m.encrypted
            and m.proposals is not None and m.rspi != b"\x00" * 8)


#: the first encrypted steps of phase 1 (RFC 2409 §5: MM1-MM4 and AM1-AM2 are in the clear)
_MM5, _AM3, _QM3 = 5, 3, 3
#: the least IKE Length of a Quick Mode message carrying an SA (QM1, QM2; RFC 2409 §5.5): header
#: 28 + HASH 20 (MD5-HMAC, the smallest) + SA with one proposal and one transform 40 + Nonce 12
#: (the nonce is 8-256 bytes); QM3 (HASH(3) alone) is below it
_QM_MIN_WITH_SA = 100


def _pair(x, y) -> tuple:
    return (x, y) if x <= y else (y, x)


def _alive(prev: list, j: int) -> int:
    """The highest index <= ``j`` not skipped in ``prev`` (``prev[k] == k``: alive; else a
    pointer further down), compressing the path; -1 when none."""
    root = j
    while root >= 0 and prev[root] != root:
        root = prev[root]
    while j > root:
        prev[j], j = root, prev[j]
    return root


class IkeTracker:
    """Sink for IKE events; builds IKE SAs and exchanges."""

    #: seconds an IKE SA rekey's new SA may stay silent after the CREATE_CHILD_SA that made it
    #: (until its first own exchange: a child rekey, DPD) — an IKE lifetime's worth
    REKEY_WAIT = 3600.0
    #: other responder SPIs remembered per IKE SA (IKE_SA_INIT answered with fresh ones)
    MAX_ALIASES = 16
    #: candidate old SAs that still talk after the new SA started, looked at per new SA before
    #: giving up (a flood of SAs between one pair; counted in ``limits["rekey_lookback"]``)
    REKEY_LOOKBACK = 64
    #: an IKE_SA_INIT is a retry of an SA answered with COOKIE / INVALID_KE (or unanswered over UDP)
    #: heard within this many seconds
    RETRY_WITHIN = 60.0

    def __init__(self, thresholds, names=None, keys=None, limits=None):
        from pcapvpn.limits import Limits

        self.th = thresholds
        self.names = names or []  # file names, by file index
        #: pcapvpn.decrypt.keys.KeyStore (--keys) or None: then nothing is decrypted
        self.keys = keys or None
        #: pcapvpn.limits.Limits: IKE SAs, messages and bytes kept
        self.lim = limits or Limits()
        self.sas: list[IkeSA] = []
        self._by_ispi: dict = {}  # (version, ispi) -> [IkeSA] in creation order
        self._by_spis: dict = {}  # (version, ispi, rspi) -> IkeSA
        self._zero_rspi: dict = {}  # (version, ispi) -> [IkeSA whose responder SPI is zero]
        self._alias: dict = {}  # (version, ispi, another responder SPI) -> IkeSA
        self._aliases: dict = {}  # id(IkeSA) -> how many aliases it has
        self.messages = 0
        #: (ref, reason): the first ``Limits.max_error_samples`` IKE parse errors
        self.parse_errors = []
        #: every IKE parse error, and by reason (at most ``Limits.max_error_reasons`` names)
        self.parse_error_count = 0
        self.parse_error_reasons: Counter = Counter()
        #: IKE datagrams whose header did not parse (not tracked; counted and listed as errors)
        self.header_errors = 0
        #: messages and bytes kept (``Limits.ike_max_messages`` / ``ike_max_bytes``)
        self.kept = 0
        self.kept_bytes = 0
        self._n = 0
        #: (initiator address, responder address) -> IKEv2 SAs whose IKE_SA_INIT was answered
        #: with COOKIE / INVALID_KE and not yet retried, in creation order (_link_retry)
        self._retry_cands: dict = {}
        #: (initiator address, responder address) -> IKEv2 SAs that began with an IKE_SA_INIT
        #: over UDP, in creation order (a retry over TCP may follow an unanswered one)
        self._udp_inits: dict = {}
        #: what a bound dropped or cut short, by the bound's name (reported as CAPTURE_LIMITS);
        #: the first frame and time each bound dropped; dropped messages by transport
        self.dropped: Counter = Counter()
        self.first_drop: dict = {}
        self.dropped_by_transport: Counter = Counter()

    def _drop(self, name: str, ref=None, ts=None) -> None:
        self.dropped[name] += 1
        if name not in self.first_drop:
            self.first_drop[name] = (ref, ts)

    def _parse_error(self, ref, reason: str) -> None:
        self.parse_error_count += 1
        if len(self.parse_errors) < self.lim.max_error_samples:
            self.parse_errors.append((ref, reason))
        by = self.parse_error_reasons
        if reason not in by and len(by) >= self.lim.max_error_reasons:
            from pcapvpn.decode import OTHER_REASONS

            reason = OTHER_REASONS
        by[reason] += 1

    # -- event ---------------------------------------------------------------------------------

    def ike_admit(self, ref, ts, transport, sport, dport, key, size) -> bool:
        """The bounds of a message, from its header alone, before the decoder parses it
        (:func:`pcapvpn.events.ike_event`): False when one drops it (counted).  A flood costs a
        dict look-up per message."""
        lim = self.lim
        bound = None
        if key not in self._by_ispi and len(self.sas) >= lim.ike_max_sas:
            bound = "ike_max_sas"
        elif self.kept >= lim.ike_max_messages:
            bound = "ike_max_messages"
        elif self.kept_bytes + size > lim.ike_max_bytes:
            bound = "ike_max_bytes"
        if bound is None:
            return True
        self._drop(bound, ref, ts)
        self._dropped_message(transport, sport, dport)
        return False

    def ike_rejected(self, ref, ts, ipver, src, dst, sport, dport, transport, data, reason,
                     frames) -> None:
        """An IKE datagram whose header did not parse: counted and listed, not tracked."""
        self.header_errors += 1
        self._parse_error(ref, "IKE: " + reason)

    def ike(self, ref, ts, ipver, src, dst, sport, dport, transport, msg, frames):
        """One parsed IKE message (:class:`dissect.vpn.ike.IkeMessage`) that :meth:`ike_admit`
        let through; the :class:`IkeMsg` tracked, or None."""
        if msg.length < _ike.HEADER_LEN:
            # RFC 7296 §3.1 / RFC 2408 §3.1: the Length includes the header; a smaller one is not
            # an IKE message we can place (do not invent an exchange from it)
            self.header_errors += 1
            self._parse_error(ref, f"IKE: Length field {msg.length} below the 28-byte header")
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
        m.encap = msg.marker and transport == "udp"
        m.version = msg.major
        m.exch = msg.exch
        m.msgid = msg.msgid
        m.flags = msg.flags
        m.ispi = msg.ispi
        m.rspi = msg.rspi
        m.length = msg.length
        m.size = msg.size
        m.truncated = msg.truncated
        m.error = msg.errors[0][0] if msg.errors else None
        if msg.errors:
            self._parse_error(ref, "IKE: " + msg.errors[0][0])
        # the parsed message is kept only for decryption (--keys): without keys the fields
        # extracted below are all that is used, and a flood of IKE messages costs less
        m.msg = msg if self.keys is not None else None
        m.payload_types = msg.payload_types
        if msg.truncated and msg.type_past_cut:
            # the snapshot length cut it: a payload named by a Next Payload field captured is on
            # the wire (an IKE_SA_INIT response's SA payload cut at 96 bytes still makes it one)
            m.payload_types.append(msg.type_past_cut)
        # an IKE_SA_INIT response re-sent with a fresh responder SPI is still a copy
        m.digest = _ike.copy_digest(msg)
        self._extract(m, msg)
        self.messages += 1
        sa = self._place(m)
        if sa is None:
            self._drop("ike_max_messages_per_sa", ref, ts)
            self._dropped_message(transport, sport, dport)
            return None
        self.kept += 1
        self.kept_bytes += m.size
        if self.keys is not None:
            self._decrypt(sa, m)
        return m

    def _dropped_message(self, transport, sport, dport) -> None:
        """Count a message a bound dropped the way the report counts IKE messages."""
        if transport == "tcp":
            self.dropped_by_transport["tcp"] += 1
        elif Port.NAT_T in (sport, dport):
            self.dropped_by_transport["udp_4500"] += 1
        else:
            self.dropped_by_transport["udp_500"] += 1

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
                if t == PayloadV2.N:
                    notifies.append(p)
                    if p.notify_type in (NotifyV2.NAT_DETECTION_SOURCE_IP,
                                         NotifyV2.NAT_DETECTION_DESTINATION_IP):
                        nat_d.append((p.notify_type, p.data))
                elif t == PayloadV2.SA:
                    proposals = p.proposals
                elif t == PayloadV2.KE:
                    ke_group = p.group
                elif t == PayloadV2.V:
                    vids.append(p.data)
                elif t == PayloadV2.D:
                    deletes.append((p.protocol, list(p.spis)))
                elif t == PayloadV2.SK:
                    sk_next = p.next_payload
                elif t == PayloadV2.SKF:
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
                if t == PayloadV1.N:
                    notifies.append(p)
                elif t == PayloadV1.SA:
                    proposals = p.proposals
                elif t == PayloadV1.VID:
                    vids.append(p.data)
                elif t == PayloadV1.NAT_D or t == PayloadV1.NAT_D_DRAFT or (
                        t == PayloadV1.NAT_D_OLD and msg.exch in (ExchangeType.MAIN_MODE, ExchangeType.AGGRESSIVE)):
                    nat_d.append((t, p.data))
                elif t == PayloadV1.D:
                    deletes.append((p.protocol, list(p.spis)))
                elif t == PayloadV1.KE:
                    ke_group = None
        idt = (PayloadV2.IDI, PayloadV2.IDR) if msg.major == 2 else (PayloadV1.ID,)
        m.ids = [p for p in msg.payloads if p.type in idt and hasattr(p, "id_type")] or ()
        m.sk_len = next((p.length for p in msg.payloads if p.type in (PayloadV2.SK, PayloadV2.SKF)), None) \
            if msg.major == 2 else None
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
        """The IKE SA of ``m``: the one with its SPI pair; else one whose responder SPI is not
        known yet; an IKEv2 IKE_SA_INIT response with another responder SPI than the one its SA
        already has goes to that SA too (libreswan answers each copy of a retransmitted
        IKE_SA_INIT with a fresh responder SPI in its cleartext error): the responder SPIs so
        met are remembered (``_alias``, at most ``MAX_ALIASES`` per SA), so that the exchange the
        initiator goes on with, under any of them, stays in the SA.  All look-ups are dict
        look-ups (a flood of SPIs costs one each)."""
        key = (m.version, m.ispi)
        cands = self._by_ispi.get(key)
        zero = b"\x00" * 8
        if cands:
            sa = self._by_spis.get((m.version, m.ispi, m.rspi))
            if sa is not None:
                return sa
            sa = self._alias.get((m.version, m.ispi, m.rspi))
            if sa is not None:
                if m.exch != ExchangeType.IKE_SA_INIT:  # the initiator went on with this responder SPI
                    self._alias[(sa.version, sa.ispi, sa.rspi)] = sa
                    self._respi(sa, m.rspi)
                return sa
            if m.rspi == zero:
                # e.g. an IKE_SA_INIT retry after COOKIE, or an INFORMATIONAL with SPIr 0
                return cands[-1]
            zeros = self._zero_rspi.get(key)
            while zeros:
                sa = zeros.pop()
                if sa.rspi == zero:
                    self._respi(sa, m.rspi)
                    return sa
            sa = cands[-1]
            if m.version == 2 and m.exch == ExchangeType.IKE_SA_INIT and m.is_response and \
                    sa.version == 2 and all(x.exch == ExchangeType.IKE_SA_INIT for x in sa.exchanges):
                n = self._aliases.get(id(sa), 0)
                if n < self.MAX_ALIASES:
                    self._aliases[id(sa)] = n + 1
                    self._alias[(m.version, m.ispi, m.rspi)] = sa
                else:
                    self._drop("ike_responder_spis", m.ref, m.ts)
                return sa
        sa = IkeSA(m.version, m.ispi, m.rspi)
        self._set_id(sa)
        self.sas.append(sa)
        self._by_ispi.setdefault(key, []).append(sa)
        self._by_spis[(m.version, m.ispi, m.rspi)] = sa
        if m.rspi == zero:
            self._zero_rspi.setdefault(key, []).append(sa)
        return sa

    def _respi(self, sa: IkeSA, rspi: bytes) -> None:
        """``sa`` now has the responder SPI ``rspi``."""
        if self._by_spis.get((sa.version, sa.ispi, sa.rspi)) is sa:
            del self._by_spis[(sa.version, sa.ispi, sa.rspi)]
        sa.rspi = rspi
        self._set_id(sa)
        self._by_spis[(sa.version, sa.ispi, rspi)] = sa

    @staticmethod
    def _set_id(sa: IkeSA) -> None:
        sa.id = f"ikev{sa.version}:{spi_hex(sa.ispi)}:{spi_hex(sa.rspi)}"

    # -- placing a message ---------------------------------------------------------------------

    def _place(self, m: IkeMsg):
        """Put ``m`` in its IKE SA and exchange; the SA, or None when the SA holds
        ``Limits.ike_max_messages_per_sa`` messages already (``m`` is then dropped)."""
        sa = self._sa_for(m)
        if len(sa.messages) >= self.lim.ike_max_messages_per_sa:
            return None
        if sa.first_ts is None:
            sa.first_ts = m.ts
            self._first_message(sa, m)
        sa.last_ts = m.ts
        sa.messages.append(m)
        ep = (m.src, m.sport, m.dst, m.dport, m.transport)
        if ep not in sa.endpoints:
            note_endpoint(sa, ep, m.n)
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
        from pcapvpn.decrypt.ikev1 import Ikev1Decryptor
        from pcapvpn.decrypt.ikev2 import Ikev2Decryptor
        from pcapvpn.decrypt.payloads import describe_inner

        orig_n = m.retransmit_of or m.duplicate_of
        if orig_n is not None:
            orig = _by_n(sa.messages, orig_n)
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
                sa.crypto = Ikev2Decryptor(keys)
            res = sa.crypto.message(m)
        else:
            if sa.crypto is None:
                keys = self.keys.ikev1_for(m.ispi)
                if not keys:
                    if m.encrypted:
                        m.decrypt_status = "no_keys"
                    return
                sa.crypto = Ikev1Decryptor(keys)
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
            m.inner = describe_inner(m.version, payloads, first)

    def _first_message(self, sa: IkeSA, m: IkeMsg) -> None:
        a = (m.ipver, m.src, m.sport)
        b = (m.ipver, m.dst, m.dport)
        if m.version == 2:
            if m.from_initiator:
                sa.initiator, sa.responder = a, b
            else:
                sa.initiator, sa.responder = b, a
            sa.initiator_known = True
            if m.exch != ExchangeType.IKE_SA_INIT:
                sa.mid_session = True
            else:
                self._link_retry(sa, m)
                if m.transport == "udp" and not m.is_response:
                    self._udp_inits.setdefault((m.src, m.dst), []).append(sa)
        else:
            # IKEv1 has no I flag: the sender of the first message with a zero responder cookie
            # is the initiator.  A Main/Aggressive Mode message with the responder's cookie set
            # and an SA payload is the responder's answer (MM2/AM2: the first message always has
            # a zero responder cookie, RFC 2408 §2.5.3, and only messages 1 and 2 carry SA,
            # RFC 2409 §5): its request is not in the capture.  Otherwise the first sender is
            # assumed to be the initiator (mid-session).
            sa.initiator, sa.responder = a, b
            sa.initiator_known = m.rspi == b"\x00" * 8
            if _v1_phase1_answer(m):
                sa.initiator, sa.responder = b, a
                sa.initiator_known = True
            elif not sa.initiator_known or not (
                    m.exch in (ExchangeType.MAIN_MODE, ExchangeType.AGGRESSIVE)
                    or m.exch >= PRIVATE_EXCHANGES):
                # (a private-use exchange opened with a zero responder cookie starts an SA:
                # Microsoft AuthIP's Main Mode is exchange type 243, [MS-AIPS])
                sa.mid_session = True

    def _link_retry(self, sa: IkeSA, m: IkeMsg) -> None:
        """A new IKE_SA_INIT right after an IKE_SA_INIT answered with COOKIE or INVALID_KE
        between the same peers is the initiator's retry with a new SPI; so is one over TCP after
        an IKE_SA_INIT over UDP that got no answer (RFC 9329 §1: TCP is the fallback when IKE
        cannot be negotiated over UDP).  It is linked to the newest such SA (in creation order)
        not yet retried, when that one was heard within the last 60 s.  Indexed per initiator /
        responder address pair (a flood of IKE_SA_INITs costs one look-up each): the SAs answered
        with COOKIE / INVALID_KE (``_retry_cands``), and those whose IKE_SA_INIT went over UDP
        (``_udp_inits``, the unanswered ones at the end kept there)."""
        key = (m.src, m.dst)
        cands = self._retry_cands.get(key)
        best = cands[-1] if cands else None
        if m.transport == "tcp":
            udp = self._udp_inits.get(key)
            while udp and (udp[-1] is sa or udp[-1].retried_by is not None
                           or not _udp_unanswered(udp[-1])):
                udp.pop()
            if udp and (best is None or _creation(udp[-1]) > _creation(best)):
                best = udp[-1]
        if best is None or best is sa or m.ts - (best.last_ts or m.ts) > self.RETRY_WITHIN:
            return
        if cands and cands[-1] is best:
            cands.pop()
        else:
            self._udp_inits[key].pop()
        best.retried_by = sa.id
        sa.retry_of = best.id

    def _retry_candidate(self, sa: IkeSA, x: Exchange, m: IkeMsg) -> None:
        """``m``, a response in ``x``, asks for a COOKIE or another KE group: ``sa`` becomes a
        candidate for :meth:`_link_retry`."""
        if x.exch != ExchangeType.IKE_SA_INIT or sa.retried_by is not None or sa._retry_cand:
            return
        if not (m.has_notify(NotifyV2.COOKIE) or m.has_notify(NotifyV2.INVALID_KE_PAYLOAD)):
            return
        sa._retry_cand = True
        cands = self._retry_cands.setdefault((sa.initiator[1], sa.responder[1]), [])
        insort(cands, sa, key=_creation)

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

    def _role_of_sender(self, sa: IkeSA, m: IkeMsg) -> Role:
        if m.version == 2:
            return Role.INITIATOR if m.from_initiator else Role.RESPONDER
        if sa.initiator and (m.src, m.sport) == (sa.initiator[1], sa.initiator[2]):
            return Role.INITIATOR
        if sa.initiator and m.src == sa.initiator[1] and m.src != sa.responder[1]:
            return Role.INITIATOR  # NAT-T float changed the port
        return Role.RESPONDER

    def _new_exchange(self, sa, exch, msgid, requester) -> Exchange:
        x = Exchange(sa, sa.version, exch, msgid, requester, len(sa.exchanges))
        sa.exchanges.append(x)
        return x

    def _place_v2(self, sa: IkeSA, m: IkeMsg) -> None:
        requester = Role.INITIATOR if (m.from_initiator != m.is_response) else Role.RESPONDER
        key = (requester, m.msgid)
        x = sa._open.get(key)
        if m.duplicate_of is not None or m.retransmit_of is not None:
            if x is None:
                x = self._new_exchange(sa, m.exch, m.msgid, requester)
                sa._open[key] = x
            x.add(m)
            m.exchange = x.index
            m.step = "response" if m.is_response else "request"
            if m.is_response and m.notifies:
                self._retry_candidate(sa, x, m)
            return
        if x is not None and not m.is_response and (x.answered or x.exch != m.exch):
            # a new request with the same Message ID after the old one was answered: an
            # IKE_SA_INIT retry (COOKIE / INVALID_KE) or a Message ID reused after a restart
            x = None
        if x is None:
            x = self._new_exchange(sa, m.exch, m.msgid, requester)
            sa._open[key] = x
        x.add(m)
        m.exchange = x.index
        m.step = "response" if m.is_response else "request"
        if m.is_response and m.notifies:
            self._retry_candidate(sa, x, m)
        if m.exch == ExchangeType.INFORMATIONAL and m.sk_next == PayloadV2.D and not m.is_response:
            # keyless: an INFORMATIONAL request whose first inner payload is a Delete
            # (RFC 7296 §3.14); it deletes this IKE SA or a child SA — unknown without keys.
            pass

    def _place_v1(self, sa: IkeSA, m: IkeMsg) -> None:
        exch = m.exch
        sender = self._role_of_sender(sa, m)
        if exch in (ExchangeType.MAIN_MODE, ExchangeType.AGGRESSIVE):
            key = ("phase1", 0)
        else:
            key = (exch, m.msgid)
        x = sa._open.get(key)
        answer_first = False
        encrypted_first = False
        qm3_first = False
        if x is None or (exch == ExchangeType.INFORMATIONAL_V1):
            requester = sender
            if x is None and key == ("phase1", 0) and sender == Role.RESPONDER and \
                    _v1_phase1_answer(m):
                requester = Role.INITIATOR  # MM2/AM2 first: the request was not captured
                answer_first = True
            elif x is None and key == ("phase1", 0) and m.encrypted and not m.copy:
                # the capture begins inside phase 1 after its cleartext messages: the first
                # encrypted one is the initiator's MM5 / AM3 (RFC 2409 §5: MM1-MM4 and AM1-AM2
                # are in the clear)
                encrypted_first = True
            elif x is None and exch == ExchangeType.QUICK_MODE and sa.mid_session and \
                    not m.copy and m.length < _QM_MIN_WITH_SA:
                # a capture begun after phase 1 and QM1-QM2: a Quick Mode message too small for
                # QM1 or QM2 (each carries HASH, SA and Nonce) is the initiator's QM3 (HASH(3)
                # alone, RFC 2409 §5.5)
                qm3_first = True
            x = self._new_exchange(sa, exch, m.msgid, requester)
            sa._open[key] = x
        x.msgs.append(m)
        m.exchange = x.index
        if m.copy:
            orig = x.message(m.retransmit_of or m.duplicate_of)
            m.step = orig.step if orig is not None else None
            m.is_response = orig.is_response if orig is not None else sender != x.requester
            x.stepped(m)
            return
        if exch == ExchangeType.INFORMATIONAL_V1:
            m.step = 1
            m.is_response = False
            x.stepped(m)
            return
        if answer_first:
            m.step = 2
            m.is_response = True
            x.stepped(m)
            return
        if qm3_first:
            m.step = _QM3
            m.is_response = False
            x.stepped(m)
            return
        if encrypted_first:
            m.step = _MM5 if exch == ExchangeType.MAIN_MODE else _AM3
            m.is_response = False
            x.stepped(m)
            return
        last = x.last_step
        if exch == ExchangeType.MAIN_MODE and not m.encrypted and last >= _MM5:
            # in the clear after MM5: MM3 / MM4 again (only MM5 and MM6 are encrypted, RFC
            # 2409 §5): a peer re-sending its last message because MM5 did not reach it
            m.step = 3 if sender == x.requester else 4
            m.is_response = sender != x.requester
            x.stepped(m)
            return
        # steps alternate: odd from the exchange's initiator, even from the responder
        expected_sender = x.requester if (last + 1) % 2 == 1 else Role(x.requester).other
        if sender == expected_sender:
            m.step = last + 1
        else:
            # same sender again with different bytes: a re-sent message of the same step
            m.step = last if last else 1
        m.is_response = sender != x.requester
        x.stepped(m)

    # -- end -----------------------------------------------------------------------------------

    def finish(self) -> None:
        self.link_rekeys()
        for sa in self.sas:
            sa._digests = {}
            sa._open = {}

    def link_rekeys(self) -> None:
        """IKEv2 IKE SA rekey (RFC 7296 §1.3.2, §2.18): a CREATE_CHILD_SA on the old SA, then a
        new SPI pair talking without any IKE_SA_INIT, then a Delete on the old SA.  The new SA is
        linked to the old one (``rekey_of`` / ``rekeyed_by``) and is not "mid-session".

        The old SA is the one whose answered CREATE_CHILD_SA came last before the new SA's first
        message (at most ``REKEY_WAIT`` s before it; the earliest created on a tie), between the
        same two addresses, not already rekeyed, and silent from 1 s after the new SA started
        (an old SA that still talks is not replaced).  Indexed: the answered CREATE_CHILD_SAs
        of each address pair are sorted by time once; each new SA looks back from its start,
        skipping SAs already rekeyed for good and giving up after ``REKEY_LOOKBACK`` candidates
        that still talk (counted in ``limits``)."""
        offers: dict = {}  # address pair -> [(response ts, -creation index, old SA)]
        news = []
        for i, sa in enumerate(self.sas):
            if sa.version != 2 or not sa.messages:
                continue
            key = _pair(sa.initiator[1], sa.responder[1])
            if sa.rekeyed_by is None:
                for x in sa.exchanges:
                    if x.exch == ExchangeType.CREATE_CHILD_SA and x.answered:
                        offers.setdefault(key, []).append((x.responses[0].ts, -i, sa))
            if sa.rekey_of is None and sa.messages[0].exch != ExchangeType.IKE_SA_INIT:
                news.append((key, sa))
        if not news or not offers:
            return
        index = {}
        for key, lst in offers.items():
            lst.sort(key=lambda o: (o[0], o[1]))
            index[key] = ([o[0] for o in lst], lst, list(range(len(lst))))
        for key, new in news:
            ix = index.get(key)
            if ix is None:
                continue
            times, lst, prev = ix
            t0 = new.first_ts
            j = bisect_right(times, t0 + 0.001) - 1
            looked = 0
            while j >= 0:
                j = _alive(prev, j)
                if j < 0 or t0 - times[j] > self.REKEY_WAIT:
                    break
                old = lst[j][2]
                if old.rekeyed_by is not None:
                    prev[j] = j - 1  # rekeyed for good: never a candidate again
                    j -= 1
                    continue
                if old is not new and (old.last_ts is None or old.last_ts <= t0 + 1.0):
                    new.rekey_of = old.id
                    old.rekeyed_by = new.id
                    new.mid_session = False
                    break
                looked += 1
                if looked >= self.REKEY_LOOKBACK:
                    self._drop("rekey_lookback", new.messages[0].ref, t0)
                    break
                j -= 1

    # -- bounded memory (live mode) --------------------------------------------------------------

    #: exchanges kept at the start of an IKE SA when :meth:`trim` drops older ones (the
    #: negotiation: IKE_SA_INIT, retries, IKE_INTERMEDIATE, IKE_AUTH / Main Mode, Quick Mode)
    TRIM_KEEP_FIRST = 4

    def trim(self, sa: IkeSA, keep: int) -> int:
        """Live mode (days of DPD and rekeys on one SA): keep at most about ``keep`` messages
        of ``sa`` — its first ``TRIM_KEEP_FIRST`` exchanges and the most recent ones; the
        exchanges in between go (with their messages, out of the kept budget; a late copy of
        one of their messages starts an exchange of its own).  Exchange indexes are
        renumbered.  Returns the number of
        messages dropped (counted in ``dropped["ike_trimmed"]``)."""
        if len(sa.messages) <= keep:
            return 0
        xs = sa.exchanges
        budget = keep - sum(len(x.msgs) for x in xs[:self.TRIM_KEEP_FIRST])
        tail = []
        for x in reversed(xs[self.TRIM_KEEP_FIRST:]):
            if len(x.msgs) > budget:
                break
            budget -= len(x.msgs)
            tail.append(x)
        tail.reverse()
        kept_x = xs[:self.TRIM_KEEP_FIRST] + tail
        if len(kept_x) == len(xs):
            return 0
        keep_ids = {id(x) for x in kept_x}
        gone = [m for x in xs if id(x) not in keep_ids for m in x.msgs]
        for i, x in enumerate(kept_x):
            x.index = i
            for m in x.msgs:
                m.exchange = i
        sa.exchanges = kept_x
        # a later copy of a forgotten exchange's message starts an exchange of its own
        sa._open = {k: x for k, x in sa._open.items() if id(x) in keep_ids}
        gone_ids = {id(m) for m in gone}
        sa.messages = [m for m in sa.messages if id(m) not in gone_ids]
        sa._digests = {k: v for k, v in sa._digests.items()
                       if id(v[0]) not in gone_ids and id(v[1]) not in gone_ids}
        self.kept -= len(gone)
        self.kept_bytes -= sum(m.size for m in gone)
        self.dropped["ike_trimmed"] += len(gone)
        return len(gone)

    def remove(self, sas) -> int:
        """Forget the IKE SAs ``sas`` (live mode's expiry and eviction: ``pcapvpn.live``); their
        messages go with them (and out of the ``ike_max_messages`` / ``ike_max_bytes`` budget).
        Returns the number removed."""
        gone = {id(sa) for sa in sas}
        if not gone:
            return 0
        before = len(self.sas)
        keep = []
        for sa in self.sas:
            if id(sa) in gone:
                self.kept -= len(sa.messages)
                self.kept_bytes -= sum(m.size for m in sa.messages)
                # the only reference cycle of an SA (it holds its exchanges, each exchange
                # its SA): broken here so that reference counting frees the SA with its
                # messages at once, not a pass of the cyclic collector over everything held
                # (live: pcapvpn.live.session's collector policy relies on it)
                for x in sa.exchanges:
                    x.sa = None
            else:
                keep.append(sa)
        self.sas = keep

        def prune_lists(d):
            for key in [k for k, v in d.items() if any(id(sa) in gone for sa in v)]:
                left = [sa for sa in d[key] if id(sa) not in gone]
                if left:
                    d[key] = left
                else:
                    del d[key]

        prune_lists(self._by_ispi)
        prune_lists(self._zero_rspi)
        prune_lists(self._retry_cands)
        prune_lists(self._udp_inits)
        for d in (self._by_spis, self._alias):
            for key in [k for k, sa in d.items() if id(sa) in gone]:
                del d[key]
        for i in gone:
            self._aliases.pop(i, None)
        return before - len(self.sas)
