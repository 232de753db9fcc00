"""IKEv1 / IKEv2 registries as data.

Numbers come from the IANA registries "Internet Key Exchange Version 2 (IKEv2) Parameters",
"Internet Security Association and Key Management Protocol (ISAKMP) Identifiers",
"IPSEC Domain of Interpretation" / "Internet Key Exchange (IKE) Attributes" and the RFCs cited
beside each entry.  Names are spelled the way operators see them printed: IKEv2 names in
UPPER_SNAKE as RFC 7296 / strongSwan print them, IKEv1 notify names with hyphens as RFC 2408 and
Wireshark print them.  Every table here was typed for this project from those registries; none
is copied from another tool.

Layout (one section per registry family):

1. exchange types            :class:`ExchangeType`, ``EXCHANGE_TYPES``, :func:`exchange_name`
2. payload types             :class:`PayloadV1` / :class:`PayloadV2`, ``PAYLOAD_TYPES_V1`` / ``_V2``,
                             :func:`payload_name`
3. notify message types      :class:`NotifyV1` / :class:`NotifyV2`, ``NOTIFY_V1`` / ``_V2``,
                             :func:`notify_name`, :func:`is_error_notify`
4. IKEv2 transforms          :class:`TransformType`, ``TRANSFORM_TYPES``, ``ENCR``, ``PRF``,
                             ``INTEG``, ``GROUPS``, ``ESN``,
                             :func:`transform_name`, :func:`proposal_string`,
                             :func:`proposal_log_string`
5. IKEv1 (ISAKMP / IPsec DOI) attributes and transform IDs, mapped onto the IKEv2 tables
6. identities, authentication, certificates, configuration, traffic selectors, EAP
7. weak-crypto posture       ``WEAK``, :func:`weak_reason`, ``SURICATA_WEAK``

Lookups never raise on unknown numbers: they return a synthesized name that carries the number.

The numbers the analyzer branches on are ``IntEnum`` classes (``ExchangeType``, ``PayloadV1``,
``PayloadV2``, ``NotifyV1``, ``NotifyV2``, ``TransformType``, ``ProtocolId``, ``IdTypeV1``,
``IkeAttrV1``, ``IpsecAttrV1``, ``IdTypeV2``, ``GwIdentType``, ``TsType``, ``CfgType``, ``CfgAttributeV1``,
``CfgAttributeV2``); the tables are keyed by their members, so each number is written
once, here.  Nothing else in ``dissect`` or ``pcapvpn`` declares a registry number
(``tests/project/test_house.py`` checks it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from .number import Number


# ---------------------------------------------------------------------------------------------
# 1. Exchange types
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExchangeInfo:
    name: str  # as Wireshark / the registry prints it
    short: str  # the operator's word ("Main Mode", "Quick Mode", "IKE_AUTH")
    version: int  # 1 = ISAKMP/IKEv1, 2 = IKEv2
    ref: str


class ExchangeType(Number):
    """Exchange types.  IKEv1: RFC 2408 §3.1 (0-5), RFC 2409 §5/§5.5 (32, 33); 6 is the
    Transaction exchange of draft-ietf-ipsec-isakmp-mode-cfg (Mode-CFG / XAUTH).  IKEv2: IANA
    "IKEv2 Exchange Types".  The two number spaces do not overlap."""

    NONE = 0
    BASE = 1
    MAIN_MODE = 2  # Identity Protection
    AUTHENTICATION_ONLY = 3
    AGGRESSIVE = 4
    INFORMATIONAL_V1 = 5
    TRANSACTION = 6  # Mode-CFG / XAUTH
    QUICK_MODE = 32
    NEW_GROUP_MODE = 33
    IKE_SA_INIT = 34
    IKE_AUTH = 35
    CREATE_CHILD_SA = 36
    INFORMATIONAL = 37
    IKE_SESSION_RESUME = 38
    GSA_AUTH = 39
    GSA_REGISTRATION = 40
    GSA_REKEY = 41
    GSA_INBAND_REKEY = 42
    IKE_INTERMEDIATE = 43
    IKE_FOLLOWUP_KE = 44


X = ExchangeType
EXCHANGE_TYPES: dict[int, ExchangeInfo] = {
    X.NONE: ExchangeInfo("NONE", "NONE", 1, "RFC 2408"),
    X.BASE: ExchangeInfo("Base", "Base", 1, "RFC 2408"),
    X.MAIN_MODE: ExchangeInfo("Identity Protection (Main Mode)", "Main Mode", 1, "RFC 2408"),
    X.AUTHENTICATION_ONLY: ExchangeInfo("Authentication Only", "Authentication Only", 1, "RFC 2408"),
    X.AGGRESSIVE: ExchangeInfo("Aggressive", "Aggressive", 1, "RFC 2408"),
    X.INFORMATIONAL_V1: ExchangeInfo("Informational", "Informational", 1, "RFC 2408"),
    X.TRANSACTION: ExchangeInfo("Transaction (Config Mode)", "Mode-CFG", 1, "draft-ietf-ipsec-isakmp-mode-cfg"),
    X.QUICK_MODE: ExchangeInfo("Quick Mode", "Quick Mode", 1, "RFC 2409"),
    X.NEW_GROUP_MODE: ExchangeInfo("New Group Mode", "New Group Mode", 1, "RFC 2409"),
    X.IKE_SA_INIT: ExchangeInfo("IKE_SA_INIT", "IKE_SA_INIT", 2, "RFC 7296"),
    X.IKE_AUTH: ExchangeInfo("IKE_AUTH", "IKE_AUTH", 2, "RFC 7296"),
    X.CREATE_CHILD_SA: ExchangeInfo("CREATE_CHILD_SA", "CREATE_CHILD_SA", 2, "RFC 7296"),
    X.INFORMATIONAL: ExchangeInfo("INFORMATIONAL", "INFORMATIONAL", 2, "RFC 7296"),
    X.IKE_SESSION_RESUME: ExchangeInfo("IKE_SESSION_RESUME", "IKE_SESSION_RESUME", 2, "RFC 5723"),
    X.GSA_AUTH: ExchangeInfo("GSA_AUTH", "GSA_AUTH", 2, "RFC 9838"),
    X.GSA_REGISTRATION: ExchangeInfo("GSA_REGISTRATION", "GSA_REGISTRATION", 2, "RFC 9838"),
    X.GSA_REKEY: ExchangeInfo("GSA_REKEY", "GSA_REKEY", 2, "RFC 9838"),
    X.GSA_INBAND_REKEY: ExchangeInfo("GSA_INBAND_REKEY", "GSA_INBAND_REKEY", 2, "RFC 9838"),
    X.IKE_INTERMEDIATE: ExchangeInfo("IKE_INTERMEDIATE", "IKE_INTERMEDIATE", 2, "RFC 9242"),
    X.IKE_FOLLOWUP_KE: ExchangeInfo("IKE_FOLLOWUP_KE", "IKE_FOLLOWUP_KE", 2, "RFC 9370"),
}
del X


#: exchange types 240-255 are for private use in both versions (RFC 2408 §3.1, RFC 7296 §3.1)
PRIVATE_EXCHANGES = 240


def exchange_name(code: int, short: bool = False) -> str:
    """Name of an exchange type; the IKEv1 and IKEv2 number spaces do not overlap.

    Unknown → ``UNKNOWN_<n>``; RFC 2408 reserves 240-255 and RFC 7296 reserves 240-255 for
    private use → ``PRIVATE_USE_<n>``.
    """
    e = EXCHANGE_TYPES.get(code)
    if e is not None:
        return e.short if short else e.name
    if PRIVATE_EXCHANGES <= code <= 255:
        return f"PRIVATE_USE_{code}"
    return f"UNKNOWN_{code}"


# ---------------------------------------------------------------------------------------------
# 2. Payload types
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PayloadInfo:
    short: str  # strongSwan-style message summary token ("SA", "KE", "No", "N", "V", "SK")
    name: str  # long name as Wireshark prints it
    ref: str


class PayloadV1(Number):
    """ISAKMP next payload types: RFC 2408 §3.1 and IANA "ISAKMP Next Payload Types"."""

    NONE = 0
    SA = 1
    PROPOSAL = 2
    TRANSFORM = 3
    KE = 4
    ID = 5
    CERT = 6
    CR = 7
    HASH = 8
    SIG = 9
    NONCE = 10
    N = 11  # Notification
    D = 12  # Delete
    VID = 13
    ATTR = 14  # Mode-CFG (draft-ietf-ipsec-isakmp-mode-cfg)
    SAK = 15  # GDOI, RFC 3547
    SAT = 16
    KD = 17
    SEQ = 18
    POP = 19
    NAT_D = 20  # RFC 3947 §3.2
    NAT_OA = 21  # RFC 3947 §5.2
    GAP = 22  # RFC 6407
    # The first NAT-T drafts' numbers, still sent by some peers (Cisco IOS, Mac OS X racoon):
    # 15/16 are NAT-D/NAT-OA in an IPsec-DOI phase-1 exchange (GDOI reuses them as SAK/SAT, but
    # only under the GDOI DOI).  The body is the same as RFC 3947's.
    NAT_D_OLD = 15
    NAT_OA_OLD = 16
    # 128-255 private use; these three are the ones seen in the wild.
    NAT_D_DRAFT = 130  # draft-ietf-ipsec-nat-t-ike-02/03
    NAT_OA_DRAFT = 131
    FRAGMENT = 132  # Cisco / strongSwan proprietary IKEv1 fragmentation


class PayloadV2(Number):
    """IKEv2 payload types: RFC 7296 §3.2 and IANA "IKEv2 Payload Types"."""

    NONE = 0
    SA = 33
    KE = 34
    IDI = 35
    IDR = 36
    CERT = 37
    CERTREQ = 38
    AUTH = 39
    NONCE = 40
    N = 41  # Notify
    D = 42  # Delete
    V = 43  # Vendor ID
    TSI = 44
    TSR = 45
    SK = 46
    CP = 47
    EAP = 48
    GSPM = 49  # RFC 6467
    IDG = 50  # RFC 9838
    GSA = 51
    KD = 52
    SKF = 53  # RFC 7383 §2.5
    PS = 54  # RFC 8019


P1, P2 = PayloadV1, PayloadV2
PAYLOAD_TYPES_V1: dict[int, PayloadInfo] = {
    P1.NONE: PayloadInfo("NONE", "NONE / No Next Payload", "RFC 2408"),
    P1.SA: PayloadInfo("SA", "Security Association", "RFC 2408"),
    P1.PROPOSAL: PayloadInfo("P", "Proposal", "RFC 2408"),
    P1.TRANSFORM: PayloadInfo("T", "Transform", "RFC 2408"),
    P1.KE: PayloadInfo("KE", "Key Exchange", "RFC 2408"),
    P1.ID: PayloadInfo("ID", "Identification", "RFC 2408"),
    P1.CERT: PayloadInfo("CERT", "Certificate", "RFC 2408"),
    P1.CR: PayloadInfo("CR", "Certificate Request", "RFC 2408"),
    P1.HASH: PayloadInfo("HASH", "Hash", "RFC 2408"),
    P1.SIG: PayloadInfo("SIG", "Signature", "RFC 2408"),
    P1.NONCE: PayloadInfo("No", "Nonce", "RFC 2408"),
    P1.N: PayloadInfo("N", "Notification", "RFC 2408"),
    P1.D: PayloadInfo("D", "Delete", "RFC 2408"),
    P1.VID: PayloadInfo("V", "Vendor ID", "RFC 2408"),
    P1.ATTR: PayloadInfo("ATTR", "Attributes", "draft-ietf-ipsec-isakmp-mode-cfg"),
    P1.SAK: PayloadInfo("SAK", "SA KEK Payload", "RFC 3547"),  # GDOI
    P1.SAT: PayloadInfo("SAT", "SA TEK Payload", "RFC 3547"),
    P1.KD: PayloadInfo("KD", "Key Download", "RFC 3547"),
    P1.SEQ: PayloadInfo("SEQ", "Sequence Number", "RFC 3547"),
    P1.POP: PayloadInfo("POP", "Proof of Possession", "RFC 3547"),
    P1.NAT_D: PayloadInfo("NAT-D", "NAT-D (RFC 3947)", "RFC 3947"),
    P1.NAT_OA: PayloadInfo("NAT-OA", "NAT-OA (RFC 3947)", "RFC 3947"),
    P1.GAP: PayloadInfo("GAP", "Group Associated Policy", "RFC 6407"),
    P1.NAT_D_DRAFT: PayloadInfo("NAT-D", "NAT-D (draft-ietf-ipsec-nat-t-ike-01 to 03)", "draft-ietf-ipsec-nat-t-ike"),
    P1.NAT_OA_DRAFT: PayloadInfo("NAT-OA", "NAT-OA (draft-ietf-ipsec-nat-t-ike-01 to 03)", "draft-ietf-ipsec-nat-t-ike"),
    P1.FRAGMENT: PayloadInfo("FRAG", "Cisco-Fragmentation", "Cisco/strongSwan proprietary IKEv1 fragmentation"),
}

PAYLOAD_TYPES_V2: dict[int, PayloadInfo] = {
    P2.NONE: PayloadInfo("NONE", "NONE / No Next Payload", "RFC 7296"),
    P2.SA: PayloadInfo("SA", "Security Association", "RFC 7296"),
    P2.KE: PayloadInfo("KE", "Key Exchange", "RFC 7296"),
    P2.IDI: PayloadInfo("IDi", "Identification - Initiator", "RFC 7296"),
    P2.IDR: PayloadInfo("IDr", "Identification - Responder", "RFC 7296"),
    P2.CERT: PayloadInfo("CERT", "Certificate", "RFC 7296"),
    P2.CERTREQ: PayloadInfo("CERTREQ", "Certificate Request", "RFC 7296"),
    P2.AUTH: PayloadInfo("AUTH", "Authentication", "RFC 7296"),
    P2.NONCE: PayloadInfo("No", "Nonce", "RFC 7296"),
    P2.N: PayloadInfo("N", "Notify", "RFC 7296"),
    P2.D: PayloadInfo("D", "Delete", "RFC 7296"),
    P2.V: PayloadInfo("V", "Vendor ID", "RFC 7296"),
    P2.TSI: PayloadInfo("TSi", "Traffic Selector - Initiator", "RFC 7296"),
    P2.TSR: PayloadInfo("TSr", "Traffic Selector - Responder", "RFC 7296"),
    P2.SK: PayloadInfo("SK", "Encrypted and Authenticated", "RFC 7296"),
    P2.CP: PayloadInfo("CP", "Configuration", "RFC 7296"),
    P2.EAP: PayloadInfo("EAP", "Extensible Authentication", "RFC 7296"),
    P2.GSPM: PayloadInfo("GSPM", "Generic Secure Password Method", "RFC 6467"),
    P2.IDG: PayloadInfo("IDg", "Group Identification", "RFC 9838"),
    P2.GSA: PayloadInfo("GSA", "Group Security Association", "RFC 9838"),
    P2.KD: PayloadInfo("KD", "Key Download", "RFC 9838"),
    P2.SKF: PayloadInfo("SKF", "Encrypted and Authenticated Fragment", "RFC 7383"),
    P2.PS: PayloadInfo("PS", "Puzzle Solution", "RFC 8019"),
}
del P1, P2


def payload_name(version: int, code: int, short: bool = True) -> str:
    """Name of a payload type for IKE ``version`` (1 or 2).

    IKEv2 messages may carry any number below 33 only as an error; IKEv1 tables are used for
    version 1.  Unknown → ``UNKNOWN_<n>``; 128-255 → ``PRIVATE_USE_<n>``.
    """
    table = PAYLOAD_TYPES_V1 if version == 1 else PAYLOAD_TYPES_V2
    p = table.get(code)
    if p is not None:
        return p.short if short else p.name
    if 128 <= code <= 255:
        return f"PRIVATE_USE_{code}"
    return f"UNKNOWN_{code}"


# ---------------------------------------------------------------------------------------------
# 3. Notify message types
# ---------------------------------------------------------------------------------------------

class NotifyV2(Number):
    """IKEv2 Notify Message Types (IANA "IKEv2 Notify Message Types - Error Types" / "- Status
    Types").  RFC 7296 unless noted."""

    UNSUPPORTED_CRITICAL_PAYLOAD = 1
    INVALID_IKE_SPI = 4
    INVALID_MAJOR_VERSION = 5
    INVALID_SYNTAX = 7
    INVALID_MESSAGE_ID = 9
    INVALID_SPI = 11
    NO_PROPOSAL_CHOSEN = 14
    INVALID_KE_PAYLOAD = 17  # data: the 2-byte KE method the responder wants
    AUTHENTICATION_FAILED = 24
    SINGLE_PAIR_REQUIRED = 34
    NO_ADDITIONAL_SAS = 35
    INTERNAL_ADDRESS_FAILURE = 36
    FAILED_CP_REQUIRED = 37
    TS_UNACCEPTABLE = 38
    INVALID_SELECTORS = 39
    UNACCEPTABLE_ADDRESSES = 40  # RFC 4555
    UNEXPECTED_NAT_DETECTED = 41  # RFC 4555
    USE_ASSIGNED_HoA = 42  # RFC 5026
    TEMPORARY_FAILURE = 43
    CHILD_SA_NOT_FOUND = 44
    INVALID_GROUP_ID = 45  # RFC 9838
    AUTHORIZATION_FAILED = 46  # RFC 9838
    STATE_NOT_FOUND = 47  # RFC 9370
    TS_MAX_QUEUE = 48  # RFC 9611
    REGISTRATION_FAILED = 49  # RFC 9838
    # --- status types
    INITIAL_CONTACT = 16384
    SET_WINDOW_SIZE = 16385
    ADDITIONAL_TS_POSSIBLE = 16386
    IPCOMP_SUPPORTED = 16387
    NAT_DETECTION_SOURCE_IP = 16388
    NAT_DETECTION_DESTINATION_IP = 16389
    COOKIE = 16390
    USE_TRANSPORT_MODE = 16391
    HTTP_CERT_LOOKUP_SUPPORTED = 16392
    REKEY_SA = 16393
    ESP_TFC_PADDING_NOT_SUPPORTED = 16394
    NON_FIRST_FRAGMENTS_ALSO = 16395
    MOBIKE_SUPPORTED = 16396  # RFC 4555
    ADDITIONAL_IP4_ADDRESS = 16397  # RFC 4555
    ADDITIONAL_IP6_ADDRESS = 16398  # RFC 4555
    NO_ADDITIONAL_ADDRESSES = 16399  # RFC 4555
    UPDATE_SA_ADDRESSES = 16400  # RFC 4555
    COOKIE2 = 16401  # RFC 4555
    NO_NATS_ALLOWED = 16402  # RFC 4555
    AUTH_LIFETIME = 16403  # RFC 4478
    MULTIPLE_AUTH_SUPPORTED = 16404  # RFC 4739
    ANOTHER_AUTH_FOLLOWS = 16405  # RFC 4739
    REDIRECT_SUPPORTED = 16406  # RFC 5685
    REDIRECT = 16407  # RFC 5685
    REDIRECTED_FROM = 16408  # RFC 5685
    TICKET_LT_OPAQUE = 16409  # RFC 5723
    TICKET_REQUEST = 16410  # RFC 5723
    TICKET_ACK = 16411  # RFC 5723
    TICKET_NACK = 16412  # RFC 5723
    TICKET_OPAQUE = 16413  # RFC 5723
    LINK_ID = 16414  # RFC 5739
    USE_WESP_MODE = 16415  # RFC 5840
    ROHC_SUPPORTED = 16416  # RFC 5857
    EAP_ONLY_AUTHENTICATION = 16417  # RFC 5998
    CHILDLESS_IKEV2_SUPPORTED = 16418  # RFC 6023
    QUICK_CRASH_DETECTION = 16419  # RFC 6290
    IKEV2_MESSAGE_ID_SYNC_SUPPORTED = 16420  # RFC 6311
    IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED = 16421  # RFC 6311
    IKEV2_MESSAGE_ID_SYNC = 16422  # RFC 6311
    IPSEC_REPLAY_COUNTER_SYNC = 16423  # RFC 6311
    SECURE_PASSWORD_METHODS = 16424  # RFC 6467
    PSK_PERSIST = 16425  # RFC 6631
    PSK_CONFIRM = 16426  # RFC 6631
    ERX_SUPPORTED = 16427  # RFC 6867
    IFOM_CAPABILITY = 16428  # 3GPP TS 24.303
    GROUP_SENDER = 16429  # RFC 9838 (formerly SENDER_REQUEST_ID)
    IKEV2_FRAGMENTATION_SUPPORTED = 16430  # RFC 7383
    SIGNATURE_HASH_ALGORITHMS = 16431  # RFC 7427
    CLONE_IKE_SA_SUPPORTED = 16432  # RFC 7791
    CLONE_IKE_SA = 16433  # RFC 7791
    PUZZLE = 16434  # RFC 8019
    USE_PPK = 16435  # RFC 8784
    PPK_IDENTITY = 16436  # RFC 8784
    NO_PPK_AUTH = 16437  # RFC 8784
    INTERMEDIATE_EXCHANGE_SUPPORTED = 16438  # RFC 9242
    IP4_ALLOWED = 16439  # RFC 8983
    IP6_ALLOWED = 16440  # RFC 8983
    ADDITIONAL_KEY_EXCHANGE = 16441  # RFC 9370
    USE_AGGFRAG = 16442  # RFC 9347
    SUPPORTED_AUTH_METHODS = 16443  # RFC 9593
    SA_RESOURCE_INFO = 16444  # RFC 9611
    USE_PPK_INT = 16445  # RFC 9867
    PPK_IDENTITY_KEY = 16446  # RFC 9867
    # 16447: assignment from a later draft (IKE_SA_INIT full-transcript auth); number less
    # certain than the ones above, kept because libreswan emits it.
    IKE_SA_INIT_FULL_TRANSCRIPT_AUTH = 16447


class NotifyV1(Number):
    """IKEv1 notify message types: RFC 2408 §3.14.1 (1-30, 16384), RFC 2407 §4.6.3
    (24576-24578), RFC 3706 (DPD) and the vendor codes seen on the wire (Cisco,
    Juniper/NetScreen).  The registry spells the names with hyphens (``R-U-THERE``), as
    Wireshark and libreswan print them: :data:`NOTIFY_V1`."""

    INVALID_PAYLOAD_TYPE = 1
    DOI_NOT_SUPPORTED = 2
    SITUATION_NOT_SUPPORTED = 3
    INVALID_COOKIE = 4
    INVALID_MAJOR_VERSION = 5
    INVALID_MINOR_VERSION = 6
    INVALID_EXCHANGE_TYPE = 7
    INVALID_FLAGS = 8
    INVALID_MESSAGE_ID = 9
    INVALID_PROTOCOL_ID = 10
    INVALID_SPI = 11
    INVALID_TRANSFORM_ID = 12
    ATTRIBUTES_NOT_SUPPORTED = 13
    NO_PROPOSAL_CHOSEN = 14
    BAD_PROPOSAL_SYNTAX = 15
    PAYLOAD_MALFORMED = 16
    INVALID_KEY_INFORMATION = 17
    INVALID_ID_INFORMATION = 18
    INVALID_CERT_ENCODING = 19
    INVALID_CERTIFICATE = 20
    CERT_TYPE_UNSUPPORTED = 21
    INVALID_CERT_AUTHORITY = 22
    INVALID_HASH_INFORMATION = 23
    AUTHENTICATION_FAILED = 24
    INVALID_SIGNATURE = 25
    ADDRESS_NOTIFICATION = 26
    NOTIFY_SA_LIFETIME = 27
    CERTIFICATE_UNAVAILABLE = 28
    UNSUPPORTED_EXCHANGE_TYPE = 29
    UNEQUAL_PAYLOAD_LENGTHS = 30
    CONNECTED = 16384  # RFC 2408
    RESPONDER_LIFETIME = 24576  # RFC 2407 §4.6.3.1
    REPLAY_STATUS = 24577  # RFC 2407 §4.6.3.2
    INITIAL_CONTACT = 24578  # RFC 2407 §4.6.3.3
    CISCO_HELLO = 30000  # Cisco private (vendor use, as libreswan names them)
    CISCO_WWTEBR = 30001
    CISCO_SHUT_UP = 30002
    IOS_KEEP_ALIVE_REQ = 32768  # Cisco IOS keepalive (pre-DPD)
    IOS_KEEP_ALIVE_ACK = 32769
    R_U_THERE = 36136  # RFC 3706
    R_U_THERE_ACK = 36137  # RFC 3706
    NETSCREEN_NHTB_INFORM = 40001  # Juniper/NetScreen next-hop tunnel binding
    UNITY_LOAD_BALANCE = 40501  # Cisco Unity: data = new gateway IPv4 address
    UNITY_UNKNOWN = 40502
    UNITY_GROUP_HASH = 40503


NOTIFY_V2: dict[int, str] = {int(n): n.name for n in NotifyV2}
NOTIFY_V1: dict[int, str] = {int(n): n.name.replace("_", "-") for n in NotifyV1}

NOTIFY_V2_BY_NAME: dict[str, int] = {v: k for k, v in NOTIFY_V2.items()}
NOTIFY_V1_BY_NAME: dict[str, int] = {v: k for k, v in NOTIFY_V1.items()}



def notify_types(version: int) -> type[NotifyV1] | type[NotifyV2]:
    """The notify enum of IKE ``version``: ``notify_types(sa.version).NO_PROPOSAL_CHOSEN`` where a
    check holds for both versions (the error numbers 1-30 mostly coincide, RFC 7296 §3.10.1)."""
    return NotifyV1 if version == 1 else NotifyV2


def notify_name(version: int, code: int) -> str:
    """Notify message type name for IKE ``version`` (1 or 2).

    Unassigned numbers → ``UNKNOWN_<n>``; private-use ranges → ``PRIVATE_ERROR_<n>`` /
    ``PRIVATE_STATUS_<n>``; IKEv1 DOI-specific range (RFC 2408: 24576-32767) →
    ``DOI_SPECIFIC_<n>``.
    """
    if version == 1:
        name = NOTIFY_V1.get(code)
        if name is not None:
            return name
        # RFC 2408 §3.14.1: 8192-16383 private errors, 24576-32767 DOI-specific status,
        # 32768-40959 private status.
        if 8192 <= code <= 16383:
            return f"PRIVATE_ERROR_{code}"
        if 24576 <= code <= 32767:
            return f"DOI_SPECIFIC_{code}"
        if 32768 <= code <= 40959:
            return f"PRIVATE_STATUS_{code}"
        return f"UNKNOWN_{code}"
    name = NOTIFY_V2.get(code)
    if name is not None:
        return name
    # RFC 7296 §3.10.1 / IANA: 8192-16383 private use errors, 40960-65535 private use status.
    if 8192 <= code <= 16383:
        return f"PRIVATE_ERROR_{code}"
    if 40960 <= code <= 65535:
        return f"PRIVATE_STATUS_{code}"
    return f"UNKNOWN_{code}"


def is_error_notify(version: int, code: int) -> bool:
    """True for error types: 1..16383 in both versions (RFC 7296 §3.10.1, RFC 2408 §3.14.1).

    An IKEv2 peer must treat an *unrecognized* error type in a response as a failed request, so
    unknown numbers in the range count as errors too.
    """
    return 1 <= code <= 16383


def notify_code(version: int, name: str) -> int | None:
    """Reverse lookup (exact spelling of :data:`NOTIFY_V1` / :data:`NOTIFY_V2`)."""
    return (NOTIFY_V1_BY_NAME if version == 1 else NOTIFY_V2_BY_NAME).get(name)


# ---------------------------------------------------------------------------------------------
# 4. IKEv2 transforms (RFC 7296 §3.3.2, RFC 9370)
# ---------------------------------------------------------------------------------------------

class TransformType(Number):
    """IKEv2 transform types: RFC 7296 §3.3.2; ADDKE1..7: RFC 9370 §2."""

    ENCR = 1
    PRF = 2
    INTEG = 3
    KE = 4  # "Diffie-Hellman Group (D-H)" before RFC 9370
    ESN = 5
    ADDKE1 = 6
    ADDKE2 = 7
    ADDKE3 = 8
    ADDKE4 = 9
    ADDKE5 = 10
    ADDKE6 = 11
    ADDKE7 = 12


T = TransformType
# type → (abbreviation, registry name)
TRANSFORM_TYPES: dict[int, tuple[str, str]] = {
    T.ENCR: ("ENCR", "Encryption Algorithm"),
    T.PRF: ("PRF", "Pseudorandom Function"),
    T.INTEG: ("INTEG", "Integrity Algorithm"),
    T.KE: ("KE", "Key Exchange Method"),
    T.ESN: ("ESN", "Extended Sequence Numbers"),
    **{t: (t.name, f"Additional Key Exchange {t - T.ADDKE1 + 1}") for t in T if t >= T.ADDKE1},
}
del T


@dataclass(frozen=True, slots=True)
class Algorithm:
    """One ENCR / PRF / INTEG / ESN transform ID.

    ``name``: IANA name (``ENCR_AES_CBC``); ``short``: how strongSwan logs it
    (``AES_CBC`` in "selected proposal: IKE:AES_CBC_256/..."); ``keyword``: the strongSwan
    ``proposals =`` keyword, ``{k}`` standing for the key length in bits (None: strongSwan has
    no keyword).  ``block_bits``: cipher block size (0 for stream / AEAD-CTR modes and non-ENCR);
    ``icv``: AEAD ICV length in octets (0 = not AEAD); ``default_keylen``: the key length implied
    when the transform carries no Key Length attribute (0 = the attribute is required or absent).
    """

    name: str
    short: str
    keyword: str | None
    ref: str
    block_bits: int = 0
    icv: int = 0
    default_keylen: int = 0

    @property
    def aead(self) -> bool:
        return self.icv > 0


A = Algorithm
# IANA "Transform Type 1 - Encryption Algorithm Transform IDs"
ENCR: dict[int, Algorithm] = {
    1: A("ENCR_DES_IV64", "DES_IV64", None, "RFC 1827", 64),
    2: A("ENCR_DES", "DES_CBC", "des", "RFC 2405", 64, default_keylen=64),
    3: A("ENCR_3DES", "3DES_CBC", "3des", "RFC 2451", 64, default_keylen=192),
    4: A("ENCR_RC5", "RC5_CBC", None, "RFC 2451", 64),
    5: A("ENCR_IDEA", "IDEA_CBC", None, "RFC 2451", 64),
    6: A("ENCR_CAST", "CAST_CBC", "cast128", "RFC 2451", 64),
    7: A("ENCR_BLOWFISH", "BLOWFISH_CBC", "blowfish{k}", "RFC 2451", 64),
    8: A("ENCR_3IDEA", "3IDEA", None, "RFC 2451", 64),
    9: A("ENCR_DES_IV32", "DES_IV32", None, "RFC 7296", 64),
    # 10 was ENCR_RC4, reserved
    11: A("ENCR_NULL", "NULL", "null", "RFC 2410"),
    12: A("ENCR_AES_CBC", "AES_CBC", "aes{k}", "RFC 3602", 128),
    13: A("ENCR_AES_CTR", "AES_CTR", "aes{k}ctr", "RFC 3686"),
    14: A("ENCR_AES_CCM_8", "AES_CCM_8", "aes{k}ccm8", "RFC 4309", icv=8),
    15: A("ENCR_AES_CCM_12", "AES_CCM_12", "aes{k}ccm12", "RFC 4309", icv=12),
    16: A("ENCR_AES_CCM_16", "AES_CCM_16", "aes{k}ccm16", "RFC 4309", icv=16),
    # 17 unassigned
    18: A("ENCR_AES_GCM_8", "AES_GCM_8", "aes{k}gcm8", "RFC 4106", icv=8),
    19: A("ENCR_AES_GCM_12", "AES_GCM_12", "aes{k}gcm12", "RFC 4106", icv=12),
    20: A("ENCR_AES_GCM_16", "AES_GCM_16", "aes{k}gcm16", "RFC 4106", icv=16),
    21: A("ENCR_NULL_AUTH_AES_GMAC", "NULL_AES_GMAC", "aes{k}gmac", "RFC 4543", icv=16),
    # 22 reserved for IEEE P1619 XTS-AES
    23: A("ENCR_CAMELLIA_CBC", "CAMELLIA_CBC", "camellia{k}", "RFC 5529", 128),
    24: A("ENCR_CAMELLIA_CTR", "CAMELLIA_CTR", "camellia{k}ctr", "RFC 5529"),
    25: A("ENCR_CAMELLIA_CCM_8", "CAMELLIA_CCM_8", "camellia{k}ccm8", "RFC 5529", icv=8),
    26: A("ENCR_CAMELLIA_CCM_12", "CAMELLIA_CCM_12", "camellia{k}ccm12", "RFC 5529", icv=12),
    27: A("ENCR_CAMELLIA_CCM_16", "CAMELLIA_CCM_16", "camellia{k}ccm16", "RFC 5529", icv=16),
    28: A("ENCR_CHACHA20_POLY1305", "CHACHA20_POLY1305", "chacha20poly1305", "RFC 7634", icv=16),
    29: A("ENCR_AES_CCM_8_IIV", "AES_CCM_8_IIV", None, "RFC 8750", icv=8),
    30: A("ENCR_AES_GCM_16_IIV", "AES_GCM_16_IIV", None, "RFC 8750", icv=16),
    31: A("ENCR_CHACHA20_POLY1305_IIV", "CHACHA20_POLY1305_IIV", None, "RFC 8750", icv=16),
    32: A("ENCR_KUZNYECHIK_MGM_KTREE", "KUZNYECHIK_MGM_KTREE", None, "RFC 9227", icv=16),
    33: A("ENCR_MAGMA_MGM_KTREE", "MAGMA_MGM_KTREE", None, "RFC 9227", icv=8),
    34: A("ENCR_KUZNYECHIK_MGM_MAC_KTREE", "KUZNYECHIK_MGM_MAC_KTREE", None, "RFC 9227", icv=16),
    35: A("ENCR_MAGMA_MGM_MAC_KTREE", "MAGMA_MGM_MAC_KTREE", None, "RFC 9227", icv=8),
}

# IANA "Transform Type 2 - Pseudorandom Function Transform IDs"
PRF: dict[int, Algorithm] = {
    1: A("PRF_HMAC_MD5", "PRF_HMAC_MD5", "prfmd5", "RFC 2104"),
    2: A("PRF_HMAC_SHA1", "PRF_HMAC_SHA1", "prfsha1", "RFC 2104"),
    3: A("PRF_HMAC_TIGER", "PRF_HMAC_TIGER", None, "RFC 7296"),
    4: A("PRF_AES128_XCBC", "PRF_AES128_XCBC", "prfaesxcbc", "RFC 4434"),
    5: A("PRF_HMAC_SHA2_256", "PRF_HMAC_SHA2_256", "prfsha256", "RFC 4868"),
    6: A("PRF_HMAC_SHA2_384", "PRF_HMAC_SHA2_384", "prfsha384", "RFC 4868"),
    7: A("PRF_HMAC_SHA2_512", "PRF_HMAC_SHA2_512", "prfsha512", "RFC 4868"),
    8: A("PRF_AES128_CMAC", "PRF_AES128_CMAC", "prfaescmac", "RFC 4615"),
    9: A("PRF_HMAC_STREEBOG_512", "PRF_HMAC_STREEBOG_512", None, "RFC 9385"),
}

# IANA "Transform Type 3 - Integrity Algorithm Transform IDs"
INTEG: dict[int, Algorithm] = {
    0: A("NONE", "NONE", None, "RFC 7296"),
    1: A("AUTH_HMAC_MD5_96", "HMAC_MD5_96", "md5", "RFC 2403"),
    2: A("AUTH_HMAC_SHA1_96", "HMAC_SHA1_96", "sha1", "RFC 2404"),
    3: A("AUTH_DES_MAC", "DES_MAC", None, "RFC 7296"),
    4: A("AUTH_KPDK_MD5", "KPDK_MD5", None, "RFC 1826"),
    5: A("AUTH_AES_XCBC_96", "AES_XCBC_96", "aesxcbc", "RFC 3566"),
    6: A("AUTH_HMAC_MD5_128", "HMAC_MD5_128", "md5_128", "RFC 4595"),
    7: A("AUTH_HMAC_SHA1_160", "HMAC_SHA1_160", "sha1_160", "RFC 4595"),
    8: A("AUTH_AES_CMAC_96", "AES_CMAC_96", "aescmac", "RFC 4494"),
    9: A("AUTH_AES_128_GMAC", "AES_128_GMAC", "aes128gmac", "RFC 4543"),
    10: A("AUTH_AES_192_GMAC", "AES_192_GMAC", "aes192gmac", "RFC 4543"),
    11: A("AUTH_AES_256_GMAC", "AES_256_GMAC", "aes256gmac", "RFC 4543"),
    12: A("AUTH_HMAC_SHA2_256_128", "HMAC_SHA2_256_128", "sha256", "RFC 4868"),
    13: A("AUTH_HMAC_SHA2_384_192", "HMAC_SHA2_384_192", "sha384", "RFC 4868"),
    14: A("AUTH_HMAC_SHA2_512_256", "HMAC_SHA2_512_256", "sha512", "RFC 4868"),
}

# IANA "Transform Type 5 - Extended Sequence Numbers Transform IDs"
ESN: dict[int, Algorithm] = {
    0: A("No Extended Sequence Numbers", "NO_EXT_SEQ", "noesn", "RFC 7296"),
    1: A("Extended Sequence Numbers", "EXT_SEQ", "esn", "RFC 7296"),
}
del A

# strongSwan derives the PRF from the integrity algorithm when a proposal lists none:
# INTEG id → PRF id.
PRF_FOR_INTEG: dict[int, int] = {1: 1, 6: 1, 2: 2, 7: 2, 5: 4, 8: 8, 12: 5, 13: 6, 14: 7}


@dataclass(frozen=True, slots=True)
class Group:
    """One Key Exchange Method (IKEv2 transform type 4) / IKEv1 Group Description.

    ``name``: the registry description; ``short``: strongSwan's log spelling (``MODP_2048``);
    ``keyword``: strongSwan proposal keyword (``modp2048``); ``kind``: MODP, ECP, EC2N, ECX
    (RFC 8031 curves), GOST, KEM; ``bits``: modulus / field / curve size; ``strength``: rough
    symmetric-equivalent security in bits (see :data:`GROUPS` notes); ``ikev2``: False for the
    EC2N groups that exist only in the IKEv1 registry.
    """

    name: str
    short: str
    keyword: str | None
    kind: str
    bits: int
    strength: int
    ref: str
    ikev2: bool = True


G = Group
# Numbers: IANA "Transform Type 4 - Key Exchange Method Transform IDs" (IKEv2) and IANA IKE
# "Group Description" (IKEv1, attribute class 4) -- the two share numbering; 3, 4 and 6-13 are
# EC2N groups of the IKEv1 registry only.
#
# Strength column (approximate symmetric-equivalent bits, used for posture display only):
#   MODP: NIST SP 800-57 Pt1 Rev5 Table 2 where it gives a value (1024→80, 2048→112,
#         3072→128); other sizes interpolated on the RFC 3766 §5 curve: 768→62, 1536→90,
#         4096→152, 6144→176, 8192→200.
#   MODP with prime-order subgroup (RFC 5114): the smaller of modulus and subgroup/2.
#   ECP / brainpool / EC2N / Curve25519 / Curve448 / GOST: half the group-order size
#         (Pollard rho), capped at 256 -- ECP256→128, ECP384→192, ECP521→256, X25519→128,
#         X448→224.
#   ML-KEM: NIST security categories 1 / 3 / 5 (≈ AES-128 / 192 / 256).
GROUPS: dict[int, Group] = {
    0: G("NONE", "MODP_NONE", None, "NONE", 0, 0, "RFC 7296"),
    1: G("768-bit MODP group", "MODP_768", "modp768", "MODP", 768, 62, "RFC 2409"),
    2: G("1024-bit MODP group", "MODP_1024", "modp1024", "MODP", 1024, 80, "RFC 2409"),
    3: G("EC2N group on GP[2^155]", "EC2N_155", None, "EC2N", 155, 77, "RFC 2409", False),
    4: G("EC2N group on GP[2^185]", "EC2N_185", None, "EC2N", 185, 92, "RFC 2409", False),
    5: G("1536-bit MODP group", "MODP_1536", "modp1536", "MODP", 1536, 90, "RFC 3526"),
    6: G("EC2N group over GF[2^163]", "EC2N_163", None, "EC2N", 163, 80, "draft-ietf-ipsec-ike-ecc-groups", False),
    7: G("EC2N group over GF[2^163]", "EC2N_163", None, "EC2N", 163, 80, "draft-ietf-ipsec-ike-ecc-groups", False),
    8: G("EC2N group over GF[2^283]", "EC2N_283", None, "EC2N", 283, 128, "draft-ietf-ipsec-ike-ecc-groups", False),
    9: G("EC2N group over GF[2^283]", "EC2N_283", None, "EC2N", 283, 128, "draft-ietf-ipsec-ike-ecc-groups", False),
    10: G("EC2N group over GF[2^409]", "EC2N_409", None, "EC2N", 409, 192, "draft-ietf-ipsec-ike-ecc-groups", False),
    11: G("EC2N group over GF[2^409]", "EC2N_409", None, "EC2N", 409, 192, "draft-ietf-ipsec-ike-ecc-groups", False),
    12: G("EC2N group over GF[2^571]", "EC2N_571", None, "EC2N", 571, 256, "draft-ietf-ipsec-ike-ecc-groups", False),
    13: G("EC2N group over GF[2^571]", "EC2N_571", None, "EC2N", 571, 256, "draft-ietf-ipsec-ike-ecc-groups", False),
    14: G("2048-bit MODP group", "MODP_2048", "modp2048", "MODP", 2048, 112, "RFC 3526"),
    15: G("3072-bit MODP group", "MODP_3072", "modp3072", "MODP", 3072, 128, "RFC 3526"),
    16: G("4096-bit MODP group", "MODP_4096", "modp4096", "MODP", 4096, 152, "RFC 3526"),
    17: G("6144-bit MODP group", "MODP_6144", "modp6144", "MODP", 6144, 176, "RFC 3526"),
    18: G("8192-bit MODP group", "MODP_8192", "modp8192", "MODP", 8192, 200, "RFC 3526"),
    19: G("256-bit random ECP group", "ECP_256", "ecp256", "ECP", 256, 128, "RFC 5903"),
    20: G("384-bit random ECP group", "ECP_384", "ecp384", "ECP", 384, 192, "RFC 5903"),
    21: G("521-bit random ECP group", "ECP_521", "ecp521", "ECP", 521, 256, "RFC 5903"),
    22: G("1024-bit MODP Group with 160-bit Prime Order Subgroup", "MODP_1024_160", "modp1024s160", "MODP", 1024, 80, "RFC 5114"),
    23: G("2048-bit MODP Group with 224-bit Prime Order Subgroup", "MODP_2048_224", "modp2048s224", "MODP", 2048, 112, "RFC 5114"),
    24: G("2048-bit MODP Group with 256-bit Prime Order Subgroup", "MODP_2048_256", "modp2048s256", "MODP", 2048, 112, "RFC 5114"),
    25: G("192-bit Random ECP Group", "ECP_192", "ecp192", "ECP", 192, 96, "RFC 5114"),
    26: G("224-bit Random ECP Group", "ECP_224", "ecp224", "ECP", 224, 112, "RFC 5114"),
    27: G("224-bit Brainpool ECP group", "ECP_224_BP", "ecp224bp", "ECP", 224, 112, "RFC 6954"),
    28: G("256-bit Brainpool ECP group", "ECP_256_BP", "ecp256bp", "ECP", 256, 128, "RFC 6954"),
    29: G("384-bit Brainpool ECP group", "ECP_384_BP", "ecp384bp", "ECP", 384, 192, "RFC 6954"),
    30: G("512-bit Brainpool ECP group", "ECP_512_BP", "ecp512bp", "ECP", 512, 256, "RFC 6954"),
    31: G("Curve25519", "CURVE_25519", "curve25519", "ECX", 255, 128, "RFC 8031"),
    32: G("Curve448", "CURVE_448", "curve448", "ECX", 448, 224, "RFC 8031"),
    33: G("GOST3410_2012_256", "GOST3410_2012_256", None, "GOST", 256, 128, "RFC 9385"),
    34: G("GOST3410_2012_512", "GOST3410_2012_512", None, "GOST", 512, 256, "RFC 9385"),
    # 35-37: ML-KEM for IKEv2 (draft-ietf-ipsecme-ikev2-mlkem, IANA early allocation); the
    # numbers match what current implementations (strongSwan 6, libreswan 5.4, Apple) send.
    35: G("ml-kem-512", "ML_KEM_512", "mlkem512", "KEM", 512, 128, "draft-ietf-ipsecme-ikev2-mlkem"),
    36: G("ml-kem-768", "ML_KEM_768", "mlkem768", "KEM", 768, 192, "draft-ietf-ipsecme-ikev2-mlkem"),
    37: G("ml-kem-1024", "ML_KEM_1024", "mlkem1024", "KEM", 1024, 256, "draft-ietf-ipsecme-ikev2-mlkem"),
}
del G

# Which table holds the IDs of each transform type (ADDKE1..7 reuse the KE table, RFC 9370).
_TABLE_FOR_TYPE: dict[int, dict[int, Algorithm] | dict[int, Group]] = {TransformType.ENCR: ENCR, TransformType.PRF: PRF,
                                    TransformType.INTEG: INTEG, TransformType.KE: GROUPS,
                                    TransformType.ESN: ESN}
_TABLE_FOR_TYPE.update((t, GROUPS) for t in TransformType if t >= TransformType.ADDKE1)


def transform_type_name(ttype: int) -> str:
    """``ENCR``, ``PRF``, ``INTEG``, ``KE``, ``ESN``, ``ADDKE1``..; else ``UNKNOWN_<n>``."""
    t = TRANSFORM_TYPES.get(ttype)
    if t is not None:
        return t[0]
    if 241 <= ttype <= 255:
        return f"PRIVATE_USE_{ttype}"
    return f"UNKNOWN_{ttype}"


def transform_name(ttype: int, tid: int) -> str:
    """IANA name of IKEv2 transform ``tid`` of type ``ttype`` (``ENCR_AES_CBC``, ``MODP_2048``...).

    KE methods are named by strongSwan's short form (``MODP_2048``, ``ECP_256``, ``CURVE_25519``)
    since the registry's descriptions are sentences.  Unknown → ``<TYPE>_UNKNOWN_<n>``, private
    use (≥1024) → ``<TYPE>_PRIVATE_USE_<n>``.
    """
    table = _TABLE_FOR_TYPE.get(ttype)
    entry = table.get(tid) if table is not None else None
    if entry is not None:
        return entry.short if table is GROUPS else entry.name
    prefix = transform_type_name(ttype)
    if tid >= 1024 and ttype != TransformType.ESN:
        return f"{prefix}_PRIVATE_USE_{tid}"
    return f"{prefix}_UNKNOWN_{tid}"


def group(number: int) -> Group | None:
    """The :class:`Group` record for a KE method / IKEv1 group number."""
    return GROUPS.get(number)


def group_name(number: int) -> str:
    """strongSwan-style group name (``MODP_2048``) or ``GROUP_UNKNOWN_<n>``."""
    g = GROUPS.get(number)
    return g.short if g is not None else f"GROUP_UNKNOWN_{number}"


# A transform as handed in by a parser: (type, id, key length in bits or None).
Transform = tuple[int, int, "int | None"]


def _keyword(ttype: int, tid: int, keylen: int | None) -> str:
    """strongSwan proposal keyword for one transform (see :func:`proposal_string`)."""
    table = _TABLE_FOR_TYPE.get(ttype)
    entry = table.get(tid) if table is not None else None
    kw = entry.keyword if entry is not None else None
    if kw is None:
        # No strongSwan keyword: the lower-cased short name, or "<type><id>" when unknown.
        if entry is not None:
            kw = entry.short.lower()
        else:
            kw = f"{transform_type_name(ttype).lower()}{tid}"
    elif "{k}" in kw:
        if keylen is None:
            keylen = entry.default_keylen if isinstance(entry, Algorithm) else 0
        kw = kw.replace("{k}", str(keylen) if keylen else "")
    if TransformType.ADDKE1 <= ttype <= TransformType.ADDKE7:
        kw = f"ke{ttype - TransformType.ESN}_{kw}"  # strongSwan 6 syntax for RFC 9370 additional key exchanges
    return kw


# How strongSwan orders a proposal: ENCR, INTEG, PRF, KE, ADDKE1..7, ESN.
_T = TransformType
_PROPOSAL_ORDER = (_T.ENCR, _T.INTEG, _T.PRF, _T.KE, *(t for t in _T if t >= _T.ADDKE1), _T.ESN)
del _T


def proposal_string(transforms: Iterable[Sequence[Any]]) -> str:
    """Render one IKEv2 proposal the way an operator writes it in strongSwan ``proposals =``.

    ``transforms``: iterable of ``(type, id)`` or ``(type, id, keylen)``, keylen in bits or None.
    Output order is ENCR, INTEG, PRF, KE, ADDKE1..7, ESN (each type in the order given), joined
    by ``-``, e.g. ``aes256-sha256-modp2048`` or ``aes256gcm16-prfsha384-ecp384``.

    * PRF keywords are printed only when they differ from what strongSwan would derive from the
      integrity algorithms listed (``PRF_FOR_INTEG``); with AEAD (no INTEG) they always print.
    * INTEG ``NONE`` (0) is omitted (implicit with AEAD).
    * ESN transforms print as ``esn`` / ``noesn``, as listed.
    * Algorithms without a strongSwan keyword print as their lower-cased short name
      (``rc5_cbc``); unknown IDs as ``encr1024`` / ``ke99``; ADDKE<n> as ``ke<n>_<keyword>``.
    """
    items = [(t[0], t[1], t[2] if len(t) > 2 else None) for t in transforms]
    by_type: dict[int, list[tuple[int, int | None]]] = {}
    for ttype, tid, keylen in items:
        by_type.setdefault(ttype, []).append((tid, keylen))
    integs = [tid for tid, _ in by_type.get(TransformType.INTEG, ()) if tid != 0]
    implied = [PRF_FOR_INTEG.get(tid) for tid in integs]
    prfs = [tid for tid, _ in by_type.get(TransformType.PRF, ())]
    skip_prf = bool(prfs) and bool(integs) and _dedup(implied) == _dedup(prfs)
    out: list[str] = []
    for ttype in _PROPOSAL_ORDER + tuple(sorted(set(by_type) - set(_PROPOSAL_ORDER))):
        for tid, keylen in by_type.get(ttype, ()):
            if ttype == TransformType.INTEG and tid == 0:
                continue
            if ttype == TransformType.PRF and skip_prf:
                continue
            out.append(_keyword(ttype, tid, keylen))
    return "-".join(out)


def _dedup(seq: Iterable[object]) -> list[object]:
    seen: list[object] = []
    for x in seq:
        if x not in seen:
            seen.append(x)
    return seen


_PROTOCOL_PREFIX = {1: "IKE", 2: "AH", 3: "ESP"}  # ProtocolId (declared in section 5)


def proposal_log_string(transforms: Iterable[Sequence[Any]],
                        protocol: int | None = None) -> str:
    """Render a proposal the way strongSwan logs it ("selected proposal: IKE:AES_CBC_256/...").

    Order ENCR, INTEG, PRF, KE, ADDKE, ESN; names are the ``short`` spellings, the key length
    appended to ENCR as ``_<bits>`` when given; ``protocol`` (1 IKE, 2 AH, 3 ESP) adds the
    ``IKE:`` prefix.  Example: ``IKE:AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048``.
    """
    items = [(t[0], t[1], t[2] if len(t) > 2 else None) for t in transforms]
    rank = {t: i for i, t in enumerate(_PROPOSAL_ORDER)}
    items.sort(key=lambda x: rank.get(x[0], 99))
    parts: list[str] = []
    for ttype, tid, keylen in items:
        table = _TABLE_FOR_TYPE.get(ttype)
        entry = table.get(tid) if table is not None else None
        name = entry.short if entry is not None else transform_name(ttype, tid)
        if ttype == TransformType.ENCR and keylen:
            name = f"{name}_{keylen}"
        if TransformType.ADDKE1 <= ttype <= TransformType.ADDKE7:
            name = f"KE{ttype - TransformType.ESN}_{name}"
        parts.append(name)
    body = "/".join(parts)
    prefix = _PROTOCOL_PREFIX.get(protocol) if protocol is not None else None
    return f"{prefix}:{body}" if prefix else body


# ---------------------------------------------------------------------------------------------
# 5. IKEv1: ISAKMP / IPsec DOI (RFC 2407, RFC 2408, RFC 2409 Appendix A)
# ---------------------------------------------------------------------------------------------

DOI: dict[int, str] = {0: "ISAKMP", 1: "IPSEC", 2: "GDOI"}  # RFC 2408, RFC 2407, RFC 3547
SITUATION: dict[int, str] = {1: "SIT_IDENTITY_ONLY", 2: "SIT_SECRECY", 4: "SIT_INTEGRITY"}  # RFC 2407 §4.2

# Protocol IDs.  IKEv1: RFC 2407 §4.4.1; IKEv2: RFC 7296 §3.3.1 (+ RFC 4595 Fibre Channel).
PROTOCOL_IDS_V1: dict[int, str] = {
    1: "PROTO_ISAKMP", 2: "PROTO_IPSEC_AH", 3: "PROTO_IPSEC_ESP", 4: "PROTO_IPCOMP",
    5: "PROTO_GIGABEAM_RADIO",  # RFC 4705
}
PROTOCOL_IDS_V2: dict[int, str] = {1: "IKE", 2: "AH", 3: "ESP", 4: "FC_ESP_HEADER", 5: "FC_CT_AUTHENTICATION"}


class ProtocolId(Number):
    """The Protocol IDs both versions share (RFC 2407 §4.4.1, RFC 7296 §3.3.1)."""

    IKE = 1  # PROTO_ISAKMP
    AH = 2
    ESP = 3
    IPCOMP = 4  # IKEv1 only


def protocol_name(version: int, code: int) -> str:
    table = PROTOCOL_IDS_V1 if version == 1 else PROTOCOL_IDS_V2
    return table.get(code, f"UNKNOWN_{code}")


# Phase-1 attribute classes (RFC 2409 Appendix A; 17 Block-Size and 20 from later IANA entries).
class IkeAttrV1(Number):
    """Phase-1 (ISAKMP SA) attribute classes, RFC 2409 Appendix A."""

    ENCRYPTION_ALGORITHM = 1
    HASH_ALGORITHM = 2
    AUTHENTICATION_METHOD = 3
    GROUP_DESCRIPTION = 4
    GROUP_TYPE = 5
    GROUP_PRIME = 6
    GROUP_GENERATOR_ONE = 7
    GROUP_GENERATOR_TWO = 8
    GROUP_CURVE_A = 9
    GROUP_CURVE_B = 10
    LIFE_TYPE = 11
    LIFE_DURATION = 12
    PRF = 13
    KEY_LENGTH = 14
    FIELD_SIZE = 15
    GROUP_ORDER = 16


V1_IKE_ATTR: dict[int, str] = {
    a: "PRF" if a == IkeAttrV1.PRF else a.name.title().replace("_", "-") for a in IkeAttrV1
}

# Encryption algorithm values (RFC 2409 App. A; 7 RFC 3602, 8 RFC 4312) and their IKEv2 ENCR twin.
V1_ENCR: dict[int, str] = {
    1: "DES-CBC", 2: "IDEA-CBC", 3: "Blowfish-CBC", 4: "RC5-R16-B64-CBC", 5: "3DES-CBC",
    6: "CAST-CBC", 7: "AES-CBC", 8: "CAMELLIA-CBC",
}
V1_ENCR_TO_ENCR: dict[int, int] = {1: 2, 2: 5, 3: 7, 4: 4, 5: 3, 6: 6, 7: 12, 8: 23}

# Hash algorithm values (RFC 2409 App. A; 4-6 RFC 4868) and the IKEv2 PRF / INTEG they act as.
V1_HASH: dict[int, str] = {1: "MD5", 2: "SHA", 3: "Tiger", 4: "SHA2-256", 5: "SHA2-384", 6: "SHA2-512"}
V1_HASH_TO_PRF: dict[int, int] = {1: 1, 2: 2, 3: 3, 4: 5, 5: 6, 6: 7}
V1_HASH_TO_INTEG: dict[int, int] = {1: 1, 2: 2, 4: 12, 5: 13, 6: 14}

# Authentication method values (RFC 2409 App. A; 9-11 RFC 4754; 64221-64224
# draft-ietf-ipsec-isakmp-hybrid-auth; 65001-65010 draft-ietf-ipsec-isakmp-xauth / XAUTH).
V1_AUTH: dict[int, str] = {
    1: "Pre-shared key",
    2: "DSS signatures",
    3: "RSA signatures",
    4: "Encryption with RSA",
    5: "Revised encryption with RSA",
    6: "Reserved (was Encryption with El-Gamal)",
    7: "Reserved (was Revised encryption with El-Gamal)",
    8: "Reserved (was ECDSA signatures)",
    9: "ECDSA with SHA-256 on the P-256 curve",
    10: "ECDSA with SHA-384 on the P-384 curve",
    11: "ECDSA with SHA-512 on the P-521 curve",
    64221: "HybridInitRSA",
    64222: "HybridRespRSA",
    64223: "HybridInitDSS",
    64224: "HybridRespDSS",
    65001: "XAUTHInitPreShared",
    65002: "XAUTHRespPreShared",
    65003: "XAUTHInitDSS",
    65004: "XAUTHRespDSS",
    65005: "XAUTHInitRSA",
    65006: "XAUTHRespRSA",
    65007: "XAUTHInitRSAEncryption",
    65008: "XAUTHRespRSAEncryption",
    65009: "XAUTHInitRSARevisedEncryption",
    65010: "XAUTHRespRSARevisedEncryption",
}
V1_AUTH_PSK_METHODS = frozenset({1, 65001, 65002})  # PSK, incl. XAUTH over PSK

V1_GROUP_TYPE: dict[int, str] = {1: "MODP", 2: "ECP", 3: "EC2N"}  # RFC 2409 App. A
LIFE_TYPE: dict[int, str] = {1: "Seconds", 2: "Kilobytes"}  # RFC 2409 App. A, RFC 2407 §4.5

# IKEv1 phase-1 groups use GROUPS above (same numbering).

# IPsec DOI SA attributes (RFC 2407 §4.5; 10 RFC 3168, 11 RFC 4304, 12-13 RFC 4359,
# 14-15 RFC 6407).
class IpsecAttrV1(Number):
    """IPsec DOI SA attributes (phase 2), RFC 2407 §4.5; 10 RFC 3168, 11 RFC 4304, 12-13
    RFC 4359, 14-15 RFC 6407."""

    SA_LIFE_TYPE = 1
    SA_LIFE_DURATION = 2
    GROUP_DESCRIPTION = 3
    ENCAPSULATION_MODE = 4
    AUTHENTICATION_ALGORITHM = 5
    KEY_LENGTH = 6
    KEY_ROUNDS = 7
    COMPRESS_DICTIONARY_SIZE = 8
    COMPRESS_PRIVATE_ALGORITHM = 9
    ECN_TUNNEL = 10
    ESN = 11
    AUTHENTICATION_KEY_LENGTH = 12
    SIGNATURE_ENCODING_ALGORITHM = 13
    ADDRESS_PRESERVATION = 14
    SA_DIRECTION = 15


_A = IpsecAttrV1
V1_IPSEC_ATTR: dict[int, str] = {
    _A.SA_LIFE_TYPE: "SA-Life-Type", _A.SA_LIFE_DURATION: "SA-Life-Duration",
    _A.GROUP_DESCRIPTION: "Group-Description", _A.ENCAPSULATION_MODE: "Encapsulation-Mode",
    _A.AUTHENTICATION_ALGORITHM: "Authentication-Algorithm", _A.KEY_LENGTH: "Key-Length",
    _A.KEY_ROUNDS: "Key-Rounds", _A.COMPRESS_DICTIONARY_SIZE: "Compress-Dictionary-Size",
    _A.COMPRESS_PRIVATE_ALGORITHM: "Compress-Private-Algorithm", _A.ECN_TUNNEL: "ECN Tunnel",
    _A.ESN: "Extended (64-bit) Sequence Number",
    _A.AUTHENTICATION_KEY_LENGTH: "Authentication Key Length",
    _A.SIGNATURE_ENCODING_ALGORITHM: "Signature Encoding Algorithm",
    _A.ADDRESS_PRESERVATION: "Address Preservation", _A.SA_DIRECTION: "SA Direction",
}
del _A

# Encapsulation mode (RFC 2407 §4.5; 3-4 RFC 3947; 61443-61444 draft-ietf-ipsec-nat-t-ike-0x).
V1_ENCAP_MODE: dict[int, str] = {
    1: "Tunnel",
    2: "Transport",
    3: "UDP-Encapsulated-Tunnel",
    4: "UDP-Encapsulated-Transport",
    61443: "UDP-Encapsulated-Tunnel (draft)",
    61444: "UDP-Encapsulated-Transport (draft)",
}
V1_ENCAP_UDP = frozenset({3, 4, 61443, 61444})

# Authentication algorithm attribute (RFC 2407 §4.5; 5-7 RFC 4868; 8 RFC 2857; 9 RFC 3566;
# 10 RFC 4359; 11-13 RFC 4543) and the IKEv2 INTEG twin.
V1_AUTH_ALG: dict[int, str] = {
    1: "HMAC-MD5", 2: "HMAC-SHA", 3: "DES-MAC", 4: "KPDK", 5: "HMAC-SHA2-256", 6: "HMAC-SHA2-384",
    7: "HMAC-SHA2-512", 8: "HMAC-RIPEMD", 9: "AES-XCBC-MAC", 10: "SIG-RSA", 11: "AES-128-GMAC",
    12: "AES-192-GMAC", 13: "AES-256-GMAC",
}
V1_AUTH_ALG_TO_INTEG: dict[int, int] = {1: 1, 2: 2, 3: 3, 4: 4, 5: 12, 6: 13, 7: 14, 9: 5, 11: 9, 12: 10, 13: 11}

# IPsec DOI transform IDs.  PROTO_ISAKMP: RFC 2407 §4.4.2.
V1_ISAKMP_TRANSFORM: dict[int, str] = {1: "KEY_IKE"}
# PROTO_IPSEC_AH: RFC 2407 §4.4.3; 5-7 RFC 4868; 8 RFC 2857; 9 RFC 3566; 10 RFC 4359; 11-13 RFC 4543.
V1_AH_TRANSFORM: dict[int, str] = {
    2: "AH_MD5", 3: "AH_SHA", 4: "AH_DES", 5: "AH_SHA2-256", 6: "AH_SHA2-384", 7: "AH_SHA2-512",
    8: "AH_RIPEMD", 9: "AH_AES-XCBC-MAC", 10: "AH_RSA", 11: "AH_AES-128-GMAC",
    12: "AH_AES-192-GMAC", 13: "AH_AES-256-GMAC",
}
V1_AH_TO_INTEG: dict[int, int] = {2: 1, 3: 2, 4: 3, 5: 12, 6: 13, 7: 14, 9: 5, 11: 9, 12: 10, 13: 11}
# PROTO_IPSEC_ESP: RFC 2407 §4.4.4; 12 RFC 3602; 13 RFC 3686; 14-16 RFC 4309; 18-20 RFC 4106;
# 21 RFC 4196; 22 RFC 4312; 23 RFC 4543.  NB 21-23 differ from the IKEv2 ENCR numbers.
V1_ESP_TRANSFORM: dict[int, str] = {
    1: "ESP_DES_IV64", 2: "ESP_DES", 3: "ESP_3DES", 4: "ESP_RC5", 5: "ESP_IDEA", 6: "ESP_CAST",
    7: "ESP_BLOWFISH", 8: "ESP_3IDEA", 9: "ESP_DES_IV32", 10: "ESP_RC4", 11: "ESP_NULL",
    12: "ESP_AES-CBC", 13: "ESP_AES-CTR", 14: "ESP_AES-CCM_8", 15: "ESP_AES-CCM_12",
    16: "ESP_AES-CCM_16", 18: "ESP_AES-GCM_8", 19: "ESP_AES-GCM_12", 20: "ESP_AES-GCM_16",
    21: "ESP_SEED_CBC", 22: "ESP_CAMELLIA", 23: "ESP_NULL_AUTH_AES-GMAC",
}
V1_ESP_TO_ENCR: dict[int, int] = {
    1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 7, 8: 8, 9: 9, 11: 11, 12: 12, 13: 13, 14: 14,
    15: 15, 16: 16, 18: 18, 19: 19, 20: 20, 22: 23, 23: 21,
}
# PROTO_IPCOMP: RFC 2407 §4.4.5 (also the IKEv2 IPCOMP_SUPPORTED notify data, RFC 7296 §3.10.1)
IPCOMP_TRANSFORM: dict[int, str] = {1: "IPCOMP_OUI", 2: "IPCOMP_DEFLATE", 3: "IPCOMP_LZS", 4: "IPCOMP_LZJH"}


def v1_transform_name(protocol: int, tid: int) -> str:
    """Name of an IKEv1 transform ID within a proposal of ``protocol`` (PROTOCOL_IDS_V1)."""
    table = {1: V1_ISAKMP_TRANSFORM, 2: V1_AH_TRANSFORM, 3: V1_ESP_TRANSFORM, 4: IPCOMP_TRANSFORM}.get(protocol, {})
    return table.get(tid, f"UNKNOWN_{tid}")


def v1_proposal_string(
    encr: int | None,
    hash_alg: int | None,
    group: int | None = None,
    keylen: int | None = None,
) -> str:
    """Phase-1 (ISAKMP SA) proposal in strongSwan ``ike =`` / ``proposals =`` syntax.

    ``encr`` / ``hash_alg`` are IKEv1 attribute values; e.g. (7, 2, 2, 256) →
    ``aes256-sha1-modp1024``.  Missing parts are left out.
    """
    parts: list[str] = []
    if encr is not None:
        e = V1_ENCR_TO_ENCR.get(encr)
        parts.append(_keyword(TransformType.ENCR, e, keylen) if e is not None else f"encr{encr}")
    if hash_alg is not None:
        i = V1_HASH_TO_INTEG.get(hash_alg)
        parts.append(_keyword(TransformType.INTEG, i, None) if i is not None else V1_HASH.get(hash_alg, f"hash{hash_alg}").lower())
    if group is not None:
        parts.append(_keyword(TransformType.KE, group, None))
    return "-".join(parts)


def v1_esp_proposal_string(
    transform_id: int,
    auth_alg: int | None = None,
    group: int | None = None,
    keylen: int | None = None,
    esn: bool = False,
) -> str:
    """Phase-2 ESP proposal in strongSwan ``esp =`` syntax, e.g. ``aes128-sha1-modp2048``.

    ``transform_id``: IPsec DOI ESP transform ID; ``auth_alg``: Authentication-Algorithm
    attribute; ``group``: Group-Description attribute (PFS); ``esn``: attribute 11 present.
    """
    e = V1_ESP_TO_ENCR.get(transform_id)
    parts = [_keyword(TransformType.ENCR, e, keylen) if e is not None else V1_ESP_TRANSFORM.get(transform_id, f"esp{transform_id}").lower()]
    if auth_alg is not None:
        i = V1_AUTH_ALG_TO_INTEG.get(auth_alg)
        parts.append(_keyword(TransformType.INTEG, i, None) if i is not None else V1_AUTH_ALG.get(auth_alg, f"auth{auth_alg}").lower())
    if group is not None:
        parts.append(_keyword(TransformType.KE, group, None))
    if esn:
        parts.append("esn")
    return "-".join(parts)


# ---------------------------------------------------------------------------------------------
# 6. Identities, authentication, certificates, configuration, traffic selectors, EAP
# ---------------------------------------------------------------------------------------------

class IdTypeV1(Number):
    """IKEv1 ID types: RFC 2407 §4.6.2.1 (12 ID_LIST: RFC 3554).  The table prints them without
    the ID_ prefix, as Wireshark does."""

    IPV4_ADDR = 1
    FQDN = 2
    USER_FQDN = 3
    IPV4_ADDR_SUBNET = 4
    IPV6_ADDR = 5
    IPV6_ADDR_SUBNET = 6
    IPV4_ADDR_RANGE = 7
    IPV6_ADDR_RANGE = 8
    DER_ASN1_DN = 9
    DER_ASN1_GN = 10
    KEY_ID = 11
    LIST = 12


class IdTypeV2(Number):
    """IKEv2 ID types: RFC 7296 §3.5 (12 RFC 4595, 13 RFC 7619); the table prints ``ID_<name>``."""

    IPV4_ADDR = 1
    FQDN = 2
    RFC822_ADDR = 3
    IPV6_ADDR = 5
    DER_ASN1_DN = 9
    DER_ASN1_GN = 10
    KEY_ID = 11
    FC_NAME = 12
    NULL = 13


ID_TYPES_V1: dict[int, str] = {int(n): n.name for n in IdTypeV1}
ID_TYPES_V2: dict[int, str] = {int(n): "ID_" + n.name for n in IdTypeV2}


def id_type_name(version: int, code: int) -> str:
    table = ID_TYPES_V1 if version == 1 else ID_TYPES_V2
    return table.get(code, f"UNKNOWN_{code}")


# IKEv2 AUTH methods: RFC 7296 §3.8 (9-11 RFC 4754, 12 RFC 6467, 13 RFC 7619, 14 RFC 7427).
AUTH_METHODS_V2: dict[int, str] = {
    1: "RSA Digital Signature",
    2: "Shared Key Message Integrity Code",
    3: "DSS Digital Signature",
    9: "ECDSA with SHA-256 on the P-256 curve",
    10: "ECDSA with SHA-384 on the P-384 curve",
    11: "ECDSA with SHA-512 on the P-521 curve",
    12: "Generic Secure Password Authentication Method",
    13: "NULL Authentication",
    14: "Digital Signature",
}

# SIGNATURE_HASH_ALGORITHMS notify data: RFC 7427 §7 (5 RFC 8420, 6-7 RFC 9385).
HASH_ALGORITHMS_V2: dict[int, str] = {
    1: "SHA1", 2: "SHA2-256", 3: "SHA2-384", 4: "SHA2-512", 5: "Identity",
    6: "STREEBOG_256", 7: "STREEBOG_512",
}

# Certificate encodings.  IKEv1: RFC 2408 §3.9; IKEv2: RFC 7296 §3.6 (5 unused, 11 deprecated
# by RFC 7670, 14 RFC 4806, 15 RFC 7670).
#: the encoding of a DER X.509 certificate, 4 in both versions
CERT_X509_SIGNATURE = 4
CERT_ENCODINGS_V1: dict[int, str] = {
    0: "NONE", 1: "PKCS #7 wrapped X.509 certificate", 2: "PGP Certificate", 3: "DNS Signed Key",
    CERT_X509_SIGNATURE: "X.509 Certificate - Signature", 5: "X.509 Certificate - Key Exchange",
    6: "Kerberos Tokens",
    7: "Certificate Revocation List (CRL)", 8: "Authority Revocation List (ARL)",
    9: "SPKI Certificate", 10: "X.509 Certificate - Attribute",
}
CERT_ENCODINGS_V2: dict[int, str] = {
    1: "PKCS #7 wrapped X.509 certificate", 2: "PGP Certificate", 3: "DNS Signed Key",
    CERT_X509_SIGNATURE: "X.509 Certificate - Signature", 6: "Kerberos Token",
    7: "Certificate Revocation List (CRL)",
    8: "Authority Revocation List (ARL)", 9: "SPKI Certificate", 10: "X.509 Certificate - Attribute",
    11: "Raw RSA Key", 12: "Hash and URL of X.509 certificate", 13: "Hash and URL of X.509 bundle",
    14: "OCSP Content", 15: "Raw Public Key",
}

# Configuration payload types.  IKEv2 CP: RFC 7296 §3.15; IKEv1 ATTR: Mode-CFG draft.
class CfgType(Number):
    """CP / ATTR payload types (the same numbers in both versions; IKEv1 prints ISAKMP_<name>)."""

    CFG_REQUEST = 1
    CFG_REPLY = 2
    CFG_SET = 3
    CFG_ACK = 4


CFG_TYPES_V2: dict[int, str] = {int(n): n.name for n in CfgType}
CFG_TYPES_V1: dict[int, str] = {int(n): "ISAKMP_" + n.name for n in CfgType}

# IKEv2 configuration attributes: RFC 7296 §3.15.1 (5, 9, 11: RFC 4306 names, reserved since
# RFC 5996 but still sent by old peers);
# 16 RFC 5026; 17-18 RFC 5739; 19 RFC 5555; 20-21 RFC 7651; 22 3GPP TS 24.302 (FTT_KAT);
# 25-26 RFC 8598.
class CfgAttributeV2(Number):
    """IKEv2 configuration attributes (table above: references)."""

    INTERNAL_IP4_ADDRESS = 1
    INTERNAL_IP4_NETMASK = 2
    INTERNAL_IP4_DNS = 3
    INTERNAL_IP4_NBNS = 4
    INTERNAL_ADDRESS_EXPIRY = 5
    INTERNAL_IP4_DHCP = 6
    APPLICATION_VERSION = 7
    INTERNAL_IP6_ADDRESS = 8
    INTERNAL_IP6_NETMASK = 9
    INTERNAL_IP6_DNS = 10
    INTERNAL_IP6_NBNS = 11
    INTERNAL_IP6_DHCP = 12
    INTERNAL_IP4_SUBNET = 13
    SUPPORTED_ATTRIBUTES = 14
    INTERNAL_IP6_SUBNET = 15
    MIP6_HOME_PREFIX = 16
    INTERNAL_IP6_LINK = 17
    INTERNAL_IP6_PREFIX = 18
    HOME_AGENT_ADDRESS = 19
    P_CSCF_IP4_ADDRESS = 20
    P_CSCF_IP6_ADDRESS = 21
    FTT_KAT = 22
    INTERNAL_DNS_DOMAIN = 25
    INTERNAL_DNSSEC_TA = 26


CP_ATTRIBUTES_V2: dict[int, str] = {int(n): n.name for n in CfgAttributeV2}

# IKEv1 Mode-CFG attributes (draft-dukes-ike-mode-cfg / draft-ietf-ipsec-isakmp-mode-cfg-05),
# XAUTH attributes (draft-beaulieu-ike-xauth-02) and the Cisco Unity private range (vendor
# attributes as strongSwan's unity plugin and Cisco clients use them).
class CfgAttributeV1(Number):
    """The IKEv1 attributes of their own (XAUTH, Cisco Unity); 1-15 are the Mode-CFG attributes
    IKEv2 kept, with the same numbers and names: :class:`CfgAttributeV2` (references above)."""

    XAUTH_TYPE = 16520
    XAUTH_USER_NAME = 16521
    XAUTH_USER_PASSWORD = 16522
    XAUTH_PASSCODE = 16523
    XAUTH_MESSAGE = 16524
    XAUTH_CHALLENGE = 16525
    XAUTH_DOMAIN = 16526
    XAUTH_STATUS = 16527
    XAUTH_NEXT_PIN = 16528
    XAUTH_ANSWER = 16529
    UNITY_BANNER = 28672
    UNITY_SAVE_PASSWD = 28673
    UNITY_DEF_DOMAIN = 28674
    UNITY_SPLITDNS_NAME = 28675
    UNITY_SPLIT_INCLUDE = 28676
    UNITY_NATT_PORT = 28677
    UNITY_LOCAL_LAN = 28678
    UNITY_PFS = 28679
    UNITY_FW_TYPE = 28680
    UNITY_BACKUP_SERVERS = 28681
    UNITY_DDNS_HOSTNAME = 28682


CFG_ATTRIBUTES_V1: dict[int, str] = {
    **{int(n): n.name for n in CfgAttributeV2 if n <= CfgAttributeV2.INTERNAL_IP6_SUBNET},
    **{int(n): n.name for n in CfgAttributeV1}}
XAUTH_TYPES: dict[int, str] = {0: "Generic", 1: "RADIUS-CHAP", 2: "OTP", 3: "S/KEY"}
XAUTH_STATUS: dict[int, str] = {0: "FAIL", 1: "OK"}


def cfg_type_name(version: int, code: int) -> str:
    table = CFG_TYPES_V1 if version == 1 else CFG_TYPES_V2
    return table.get(code, f"UNKNOWN_{code}")


def cfg_attribute_name(version: int, code: int) -> str:
    table = CFG_ATTRIBUTES_V1 if version == 1 else CP_ATTRIBUTES_V2
    return table.get(code, f"UNKNOWN_{code}")


# Traffic selector types: RFC 7296 §3.13.1 (9 RFC 4595, 10 RFC 9478).
class GwIdentType(Number):
    """REDIRECT / REDIRECTED_FROM Gateway Identity Types, RFC 5685 §10."""

    IPV4 = 1
    IPV6 = 2
    FQDN = 3


class TsType(Number):
    TS_IPV4_ADDR_RANGE = 7
    TS_IPV6_ADDR_RANGE = 8
    TS_FC_ADDR_RANGE = 9
    TS_SECLABEL = 10


TS_TYPES: dict[int, str] = {int(n): n.name for n in TsType}

# EAP: codes RFC 3748 §4 (5-6 RFC 6696); method types RFC 3748 §5 and the IANA EAP registry.
EAP_CODES: dict[int, str] = {1: "Request", 2: "Response", 3: "Success", 4: "Failure", 5: "Initiate", 6: "Finish"}
EAP_TYPES: dict[int, str] = {
    1: "Identity", 2: "Notification", 3: "Nak", 4: "MD5-Challenge", 5: "One-Time Password",
    6: "Generic Token Card", 13: "EAP-TLS", 18: "EAP-SIM", 21: "EAP-TTLS", 23: "EAP-AKA",
    25: "PEAP", 26: "EAP-MSCHAP-V2", 43: "EAP-FAST", 50: "EAP-AKA'", 52: "EAP-PWD",
    254: "Expanded Type", 255: "Experimental",
}


# ---------------------------------------------------------------------------------------------
# 7. Weak-crypto posture
# ---------------------------------------------------------------------------------------------

_SWEET32 = "64-bit block cipher (Sweet32)"
_DES = "56-bit DES key, brute-forceable"
_MD5 = "MD5-based (broken hash; RFC 8247 MUST NOT)"

# kind → {IKEv2 id: reason}.  The IKEv1 kinds map onto these through the *_TO_* tables above.
WEAK: dict[str, dict[int, str]] = {
    "encr": {
        1: _DES + " (DES with 64-bit IV)",
        2: _DES,
        3: _SWEET32 + ", 3DES (RFC 8221 SHOULD NOT for ESP)",
        4: _SWEET32 + ", RC5",
        5: _SWEET32 + ", IDEA",
        6: _SWEET32 + ", CAST-128",
        7: _SWEET32 + ", Blowfish",
        8: _SWEET32 + ", 3IDEA",
        9: _DES + " (DES with 32-bit IV)",
        11: "no encryption (ENCR_NULL)",
    },
    "prf": {
        1: _MD5,
        2: "SHA-1-based PRF (RFC 8247 MUST-, being phased out)",
    },
    "integ": {
        1: _MD5 + ", 96-bit MAC",
        2: "SHA-1-based MAC (RFC 8247 MUST-, being phased out)",
        3: "DES-based MAC (RFC 8247 MUST NOT)",
        4: "keyed-prefix MD5 (KPDK; RFC 8247 MUST NOT)",
        5: "96-bit AES-XCBC MAC (RFC 8247 keeps it for IoT only)",
        6: _MD5,
        7: "SHA-1-based MAC (RFC 8247 MUST-, being phased out)",
    },
    "ke": {
        1: "768-bit MODP group (broken, Logjam class; RFC 8247 MUST NOT)",
        2: "1024-bit MODP group (Logjam class, ~80-bit; RFC 8247 SHOULD NOT)",
        3: "155-bit EC2N group (< 80-bit)",
        4: "185-bit EC2N group (< 112-bit)",
        5: "1536-bit MODP group (~90-bit, below 112; RFC 8247 SHOULD NOT)",
        6: "163-bit EC2N group (~80-bit)",
        7: "163-bit EC2N group (~80-bit)",
        22: "1024-bit MODP group with 160-bit subgroup (RFC 5114, Logjam class; RFC 8247 SHOULD NOT)",
        23: "RFC 5114 MODP group with small subgroup (RFC 8247 SHOULD NOT)",
        24: "RFC 5114 MODP group with small subgroup (RFC 8247 SHOULD NOT)",
        25: "192-bit ECP group (~96-bit, below 112)",
    },
    "esn": {},
}
# IKEv1 phase-1 hash: MD5 is broken; SHA-1 still common but deprecated (RFC 9395 deprecates IKEv1).
_WEAK_V1_HASH: dict[int, str] = {1: _MD5, 2: "SHA-1 hash (deprecated)"}

# What Suricata's IKEv2 parser flags (anchors §2.2): ids per kind.
SURICATA_WEAK: dict[str, frozenset[int]] = {
    "encr": frozenset({1, 2, 3, 4, 5, 6, 7, 8, 9, 11}),
    "prf": frozenset({1, 2}),
    "integ": frozenset({1, 2, 3, 4, 5, 6, 7}),
    "ke": frozenset({1, 2, 22, 5}),
}

_V1_KIND_MAP: dict[str, tuple[str, dict[int, int]]] = {
    "v1_encr": ("encr", V1_ENCR_TO_ENCR),
    "v1_esp": ("encr", V1_ESP_TO_ENCR),
    "v1_auth_alg": ("integ", V1_AUTH_ALG_TO_INTEG),
    "v1_ah": ("integ", V1_AH_TO_INTEG),
}

WEAK_KINDS = ("encr", "prf", "integ", "ke", "esn", "v1_encr", "v1_hash", "v1_group", "v1_esp", "v1_ah", "v1_auth_alg")


def weak_reason(kind: str, code: int) -> str | None:
    """Short reason why algorithm ``code`` of ``kind`` is weak, or None.

    Kinds: ``encr``, ``prf``, ``integ``, ``ke``, ``esn`` (IKEv2 transform IDs; ``ke`` also
    for ADDKE), ``v1_encr`` (phase-1 Encryption-Algorithm), ``v1_hash`` (phase-1
    Hash-Algorithm), ``v1_group`` (Group-Description, either phase), ``v1_esp`` (ESP transform
    ID), ``v1_ah`` (AH transform ID), ``v1_auth_alg`` (IPsec Authentication-Algorithm).  The
    IKEv1 kinds reuse the IKEv2 reasons through the mapping tables; ESP_RC4 has its own.
    """
    if kind in WEAK:
        return WEAK[kind].get(code)
    if kind == "v1_group":
        return WEAK["ke"].get(code)
    if kind == "v1_hash":
        return _WEAK_V1_HASH.get(code)
    if kind == "v1_esp" and code == 10:
        return "RC4 stream cipher (broken)"
    mapped = _V1_KIND_MAP.get(kind)
    if mapped is None:
        raise ValueError(f"unknown weak-crypto kind {kind!r}")
    base, table = mapped
    twin = table.get(code)
    return WEAK[base].get(twin) if twin is not None else None


def is_weak(kind: str, code: int) -> bool:
    return weak_reason(kind, code) is not None
