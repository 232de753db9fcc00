"""The records the IKE tracker builds: :class:`IkeMsg` (one message as seen on the wire),
:class:`Exchange` (a request and its responses, or the messages of one IKEv1 exchange) and
:class:`IkeSA` (one SPI pair), with the IKEv1 step names.  :mod:`pcapvpn.track.ike` fills them;
rules and the report read them.
"""

from __future__ import annotations

from bisect import bisect_left

from dissect.vpn.registry import ExchangeType, PayloadV2
from pcapvpn.events import HEAD_ONLY

# IKEv1 exchanges as operators count their messages (MM1..MM6, AM1..AM3, QM1..QM3, TM1..)
V1_STEP_PREFIX = {ExchangeType.MAIN_MODE: "MM", ExchangeType.AGGRESSIVE: "AM",
                  ExchangeType.QUICK_MODE: "QM", ExchangeType.TRANSACTION: "TM"}
V1_STEPS = {ExchangeType.MAIN_MODE: 6, ExchangeType.AGGRESSIVE: 3, ExchangeType.QUICK_MODE: 3}


def spi_hex(b: bytes) -> str:
    return bytes(b).hex()


def _by_n(msgs, n):
    """The message numbered ``n`` in ``msgs`` (a list in increasing ``n`` order), or None."""
    i = bisect_left(msgs, n, key=_msg_n)
    return msgs[i] if i < len(msgs) and msgs[i].n == n else None


def _msg_n(m) -> int:
    return m.n


class IkeMsg:
    """One IKE message as seen on the wire."""

    __slots__ = (
        "n", "ref", "frames", "ts", "ipver", "src", "dst", "sport", "dport", "transport",
        # UDP with a non-ESP marker before the message (RFC 3948 §2.2: NAT-T framing, on 4500
        # or on custom ports)
        "encap",
        "version", "exch", "msgid", "flags", "ispi", "rspi", "length", "size",
        "is_response", "from_initiator", "payload_types", "notifies", "sk_next", "skf",
        "encrypted", "digest", "step", "retransmit_of", "duplicate_of", "error", "truncated",
        "msg", "ke_group", "proposals", "vendor_ids", "nat_d", "deletes", "exchange",
        # the cleartext ID payload records, and the SK/SKF payload's Length field (or None):
        # what the report and rules need of the parsed message once ``msg`` is let go
        "ids", "sk_len",
        # with --keys (pcapvpn.decrypt): status ("ok", "unverified", "icv_failed", "malformed",
        # "no_keys", ...), why, the key line used, and what the payloads say (describe_inner)
        "decrypt_status", "decrypt_detail", "key_origin", "inner",
    )

    def __init__(self):
        self.encap = False
        self.retransmit_of = None
        self.duplicate_of = None
        self.step = None
        self.exchange = None
        self.decrypt_status = None
        self.decrypt_detail = None
        self.key_origin = None
        self.inner = None

    @property
    def head_only(self) -> bool:
        """Read from the first IP fragment of its datagram: the later fragments are not in the
        capture (a port capture filter drops them, or they were lost before the capture
        point)."""
        return self.truncated == HEAD_ONLY

    @property
    def copy(self) -> bool:
        """A retransmission or a capture duplicate (not a new message)."""
        return self.retransmit_of is not None or self.duplicate_of is not None

    def error_notifies(self) -> list[int]:
        return [n.notify_type for n in self.notifies if n.is_error]

    def has_notify(self, ntype: int) -> bool:
        return any(n.notify_type == ntype for n in self.notifies)

    def notify(self, ntype: int):
        """The first Notify / Notification record of type ``ntype`` (dissect's record), or None."""
        for n in self.notifies:
            if n.notify_type == ntype:
                return n
        return None

    def notify_data(self, ntype: int):
        n = self.notify(ntype)
        return n.data if n is not None else None


class Exchange:
    """A request and its response(s) (IKEv2), or the messages of one IKEv1 exchange."""

    __slots__ = ("sa", "version", "exch", "msgid", "requester", "msgs", "index", "closed",
                 "n_responses", "max_step")

    def __init__(self, sa, version, exch, msgid, requester, index):
        self.sa = sa
        self.version = version
        self.exch = exch
        self.msgid = msgid
        self.requester = requester  # Role: the initiator or the responder of the IKE SA
        self.msgs: list[IkeMsg] = []
        self.index = index
        self.closed = False
        #: kept up to date by :meth:`add` / :meth:`stepped` (an exchange may hold thousands of
        #: messages: a flood of copies or of SKF fragments; nothing re-reads them all per message)
        self.n_responses = 0
        self.max_step = 0

    def add(self, m: IkeMsg) -> None:
        self.msgs.append(m)
        if m.is_response:
            self.n_responses += 1

    def stepped(self, m: IkeMsg) -> None:
        """``m`` (already added) got its IKEv1 step and direction."""
        if m.is_response:
            self.n_responses += 1
        if isinstance(m.step, int) and m.step > self.max_step:
            self.max_step = m.step

    def message(self, n: int):
        """The message numbered ``n`` in this exchange, or None (messages are in ``n`` order)."""
        return _by_n(self.msgs, n)

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
            return self.n_responses > 0
        # IKEv1: the exchange got past its first message from the other side
        return self.max_step >= 2 or self.exch == ExchangeType.INFORMATIONAL_V1

    @property
    def last_step(self) -> int:
        return self.max_step

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
        "initiator_known", "crypto", "_retry_cand", "_ep_seen",
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
        #: (src, sport, dst, dport, transport) -> first n, only those that bring an address or
        #: port the NAT verdict reads (pcapvpn.track.nat.note_endpoint: at most
        #: MAX_CANDIDATE_ADDRS + MAX_CANDIDATE_PORTS entries, however many ports a flood uses)
        self.endpoints: dict = {}
        self._ep_seen = None  # (addresses, ports) of ``endpoints`` (note_endpoint)
        self._digests: dict = {}  # (digest, src, sport) -> last IkeMsg with it
        self.nat = None
        self.crypto = None  # decrypt.ikev2.Ikev2Decryptor / ikev1.Ikev1Decryptor (--keys)
        self._retry_cand = False

    @property
    def peers(self) -> tuple:
        return (self.initiator, self.responder)

    def find_exchanges(self, exch) -> list[Exchange]:
        return [x for x in self.exchanges if x.exch == exch]

    @property
    def established(self) -> bool:
        """IKEv2: the last answered IKE_AUTH exchange's response does not start with a Notify or
        an EAP payload (keyless) and carries no cleartext error; IKEv1: Main Mode reached MM6 / Aggressive AM3, or Quick Mode seen."""
        if self.version == 2:
            # with EAP (RFC 7296 §2.16) IKE_AUTH is several exchanges: the last one answered
            # decides (its response carries AUTH, or N(AUTHENTICATION_FAILED), or — EAP still
            # going on — EAP)
            auths = [x for x in self.exchanges if x.exch == ExchangeType.IKE_AUTH and x.responses]
            for x in auths[-1:]:
                for m in x.responses:
                    if m.sk_next not in (None, PayloadV2.N, PayloadV2.EAP) and not m.error_notifies():
                        return True
                    if m.sk_next is None and m.encrypted is False and not m.error_notifies() \
                            and PayloadV2.IDR in m.payload_types:
                        return True
            # an SA first seen mid-session, or created by an IKE SA rekey, that carries protected
            # traffic is established
            return (self.mid_session or self.rekey_of is not None) and any(
                m.encrypted for m in self.messages)
        for x in self.exchanges:
            if x.exch == ExchangeType.MAIN_MODE and x.last_step >= 6:
                return True
            if x.exch == ExchangeType.AGGRESSIVE and x.last_step >= 3:
                return True
            if x.exch == ExchangeType.QUICK_MODE:
                return True
        return self.mid_session and any(m.encrypted for m in self.messages)
