"""dissect.vpn.registry: the IANA/RFC tables, lookups with fallbacks, proposal strings, posture.

The oracle test at the end compares every name tshark 4.0 prints (``tshark -G values``) with
ours, modulo case and punctuation, and lists the known differences with their reason.
"""

from __future__ import annotations

import re
import subprocess
from collections import defaultdict

import pytest

from conftest import REPO, tshark_path
from dissect.vpn import registry as r

# --------------------------------------------------------------------------- exchange types


def test_exchange_types_ikev1_and_ikev2():
    assert r.exchange_name(2) == "Identity Protection (Main Mode)"
    assert r.exchange_name(2, short=True) == "Main Mode"
    assert r.exchange_name(4, short=True) == "Aggressive"
    assert r.exchange_name(32, short=True) == "Quick Mode"
    assert r.exchange_name(5) == "Informational"
    assert r.exchange_name(6) == "Transaction (Config Mode)"
    assert [r.exchange_name(n) for n in range(34, 45)] == [
        "IKE_SA_INIT", "IKE_AUTH", "CREATE_CHILD_SA", "INFORMATIONAL", "IKE_SESSION_RESUME",
        "GSA_AUTH", "GSA_REGISTRATION", "GSA_REKEY", "GSA_INBAND_REKEY", "IKE_INTERMEDIATE",
        "IKE_FOLLOWUP_KE",
    ]
    assert r.EXCHANGE_TYPES[38].ref == "RFC 5723"
    assert r.EXCHANGE_TYPES[43].ref == "RFC 9242"
    assert r.EXCHANGE_TYPES[44].ref == "RFC 9370"
    assert {n for n, e in r.EXCHANGE_TYPES.items() if e.version == 1} == {0, 1, 2, 3, 4, 5, 6, 32, 33}


def test_exchange_unknown_and_private():
    assert r.exchange_name(99) == "UNKNOWN_99"
    assert r.exchange_name(250) == "PRIVATE_USE_250"
    assert r.exchange_name(99, short=True) == "UNKNOWN_99"


# --------------------------------------------------------------------------- payload types


def test_payload_types_ikev2_short_names_as_strongswan_prints():
    shorts = {n: r.payload_name(2, n) for n in range(33, 55)}
    assert shorts == {
        33: "SA", 34: "KE", 35: "IDi", 36: "IDr", 37: "CERT", 38: "CERTREQ", 39: "AUTH",
        40: "No", 41: "N", 42: "D", 43: "V", 44: "TSi", 45: "TSr", 46: "SK", 47: "CP", 48: "EAP",
        49: "GSPM", 50: "IDg", 51: "GSA", 52: "KD", 53: "SKF", 54: "PS",
    }
    assert r.payload_name(2, 46, short=False) == "Encrypted and Authenticated"
    assert r.payload_name(2, 53, short=False) == "Encrypted and Authenticated Fragment"
    assert r.PAYLOAD_TYPES_V2[54].ref == "RFC 8019"


def test_payload_types_ikev1():
    assert [r.payload_name(1, n) for n in range(0, 14)] == [
        "NONE", "SA", "P", "T", "KE", "ID", "CERT", "CR", "HASH", "SIG", "No", "N", "D", "V"]
    assert r.payload_name(1, 14) == "ATTR"
    assert r.payload_name(1, 20) == r.payload_name(1, 130) == "NAT-D"
    assert r.payload_name(1, 21) == r.payload_name(1, 131) == "NAT-OA"
    assert r.payload_name(1, 132) == "FRAG"
    assert r.payload_name(1, 130, short=False).startswith("NAT-D (draft")
    assert r.payload_name(1, 60) == "UNKNOWN_60"
    assert r.payload_name(1, 200) == "PRIVATE_USE_200"
    assert r.payload_name(2, 20) == "UNKNOWN_20"


# --------------------------------------------------------------------------- notify types

# anchors.md §5.2, the full IKEv2 error list and the status selection.
V2_ERRORS = {
    1: "UNSUPPORTED_CRITICAL_PAYLOAD", 4: "INVALID_IKE_SPI", 5: "INVALID_MAJOR_VERSION",
    7: "INVALID_SYNTAX", 9: "INVALID_MESSAGE_ID", 11: "INVALID_SPI", 14: "NO_PROPOSAL_CHOSEN",
    17: "INVALID_KE_PAYLOAD", 24: "AUTHENTICATION_FAILED", 34: "SINGLE_PAIR_REQUIRED",
    35: "NO_ADDITIONAL_SAS", 36: "INTERNAL_ADDRESS_FAILURE", 37: "FAILED_CP_REQUIRED",
    38: "TS_UNACCEPTABLE", 39: "INVALID_SELECTORS", 40: "UNACCEPTABLE_ADDRESSES",
    41: "UNEXPECTED_NAT_DETECTED", 42: "USE_ASSIGNED_HoA", 43: "TEMPORARY_FAILURE",
    44: "CHILD_SA_NOT_FOUND", 45: "INVALID_GROUP_ID", 46: "AUTHORIZATION_FAILED",
    47: "STATE_NOT_FOUND", 48: "TS_MAX_QUEUE", 49: "REGISTRATION_FAILED",
}
V2_STATUS = {
    16384: "INITIAL_CONTACT", 16385: "SET_WINDOW_SIZE", 16386: "ADDITIONAL_TS_POSSIBLE",
    16387: "IPCOMP_SUPPORTED", 16388: "NAT_DETECTION_SOURCE_IP",
    16389: "NAT_DETECTION_DESTINATION_IP", 16390: "COOKIE", 16391: "USE_TRANSPORT_MODE",
    16392: "HTTP_CERT_LOOKUP_SUPPORTED", 16393: "REKEY_SA", 16394: "ESP_TFC_PADDING_NOT_SUPPORTED",
    16395: "NON_FIRST_FRAGMENTS_ALSO", 16396: "MOBIKE_SUPPORTED", 16397: "ADDITIONAL_IP4_ADDRESS",
    16398: "ADDITIONAL_IP6_ADDRESS", 16399: "NO_ADDITIONAL_ADDRESSES", 16400: "UPDATE_SA_ADDRESSES",
    16401: "COOKIE2", 16402: "NO_NATS_ALLOWED", 16403: "AUTH_LIFETIME",
    16404: "MULTIPLE_AUTH_SUPPORTED", 16405: "ANOTHER_AUTH_FOLLOWS", 16406: "REDIRECT_SUPPORTED",
    16407: "REDIRECT", 16408: "REDIRECTED_FROM", 16409: "TICKET_LT_OPAQUE", 16410: "TICKET_REQUEST",
    16411: "TICKET_ACK", 16412: "TICKET_NACK", 16413: "TICKET_OPAQUE",
    16417: "EAP_ONLY_AUTHENTICATION", 16418: "CHILDLESS_IKEV2_SUPPORTED",
    16419: "QUICK_CRASH_DETECTION", 16420: "IKEV2_MESSAGE_ID_SYNC_SUPPORTED",
    16421: "IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED", 16422: "IKEV2_MESSAGE_ID_SYNC",
    16423: "IPSEC_REPLAY_COUNTER_SYNC", 16430: "IKEV2_FRAGMENTATION_SUPPORTED",
    16431: "SIGNATURE_HASH_ALGORITHMS", 16435: "USE_PPK", 16436: "PPK_IDENTITY",
    16437: "NO_PPK_AUTH", 16438: "INTERMEDIATE_EXCHANGE_SUPPORTED",
    16441: "ADDITIONAL_KEY_EXCHANGE", 16442: "USE_AGGFRAG", 16444: "SA_RESOURCE_INFO",
}
V1_NOTIFIES = {
    1: "INVALID-PAYLOAD-TYPE", 2: "DOI-NOT-SUPPORTED", 3: "SITUATION-NOT-SUPPORTED",
    4: "INVALID-COOKIE", 5: "INVALID-MAJOR-VERSION", 6: "INVALID-MINOR-VERSION",
    7: "INVALID-EXCHANGE-TYPE", 8: "INVALID-FLAGS", 9: "INVALID-MESSAGE-ID",
    10: "INVALID-PROTOCOL-ID", 11: "INVALID-SPI", 12: "INVALID-TRANSFORM-ID",
    13: "ATTRIBUTES-NOT-SUPPORTED", 14: "NO-PROPOSAL-CHOSEN", 15: "BAD-PROPOSAL-SYNTAX",
    16: "PAYLOAD-MALFORMED", 17: "INVALID-KEY-INFORMATION", 18: "INVALID-ID-INFORMATION",
    19: "INVALID-CERT-ENCODING", 20: "INVALID-CERTIFICATE", 21: "CERT-TYPE-UNSUPPORTED",
    22: "INVALID-CERT-AUTHORITY", 23: "INVALID-HASH-INFORMATION", 24: "AUTHENTICATION-FAILED",
    25: "INVALID-SIGNATURE", 26: "ADDRESS-NOTIFICATION", 27: "NOTIFY-SA-LIFETIME",
    28: "CERTIFICATE-UNAVAILABLE", 29: "UNSUPPORTED-EXCHANGE-TYPE", 30: "UNEQUAL-PAYLOAD-LENGTHS",
    16384: "CONNECTED", 24576: "RESPONDER-LIFETIME", 24577: "REPLAY-STATUS",
    24578: "INITIAL-CONTACT", 36136: "R-U-THERE", 36137: "R-U-THERE-ACK",
}


def test_notify_v2_full_error_list_and_status_selection():
    for code, name in {**V2_ERRORS, **V2_STATUS}.items():
        assert r.notify_name(2, code) == name, code
    # Every assigned error in 1..49 is in the table, nothing else below 50.
    assert {c for c in r.NOTIFY_V2 if c < 16384} == set(V2_ERRORS)


def test_notify_v1_names_use_hyphens():
    for code, name in V1_NOTIFIES.items():
        assert r.notify_name(1, code) == name, code
    for code in (30000, 30001, 30002, 32768, 32769, 40001, 40501):
        assert not r.notify_name(1, code).startswith(("UNKNOWN", "PRIVATE")), code
    assert all("_" not in n for n in r.NOTIFY_V1.values())


def test_notify_unknown_and_private_ranges():
    assert r.notify_name(2, 0) == "UNKNOWN_0"
    assert r.notify_name(2, 2) == "UNKNOWN_2"
    assert r.notify_name(2, 100) == "UNKNOWN_100"
    assert r.notify_name(2, 8192) == "PRIVATE_ERROR_8192"
    assert r.notify_name(2, 16383) == "PRIVATE_ERROR_16383"
    assert r.notify_name(2, 20000) == "UNKNOWN_20000"
    assert r.notify_name(2, 40960) == "PRIVATE_STATUS_40960"
    assert r.notify_name(1, 31) == "UNKNOWN_31"
    assert r.notify_name(1, 9000) == "PRIVATE_ERROR_9000"
    assert r.notify_name(1, 24600) == "DOI_SPECIFIC_24600"
    assert r.notify_name(1, 33000) == "PRIVATE_STATUS_33000"
    assert r.notify_name(1, 50000) == "UNKNOWN_50000"


def test_is_error_notify():
    for v in (1, 2):
        assert not r.is_error_notify(v, 0)
        assert r.is_error_notify(v, 1)
        assert r.is_error_notify(v, 14)
        assert r.is_error_notify(v, 16383)  # unknown/private errors are still errors
        assert not r.is_error_notify(v, 16384)
    assert not r.is_error_notify(2, r.NotifyV2.NAT_DETECTION_SOURCE_IP)
    assert not r.is_error_notify(1, r.NotifyV1.R_U_THERE)


def test_notify_reverse_lookup_and_uniqueness():
    assert len(r.NOTIFY_V2_BY_NAME) == len(r.NOTIFY_V2)
    assert len(r.NOTIFY_V1_BY_NAME) == len(r.NOTIFY_V1)
    assert r.notify_code(2, "INVALID_KE_PAYLOAD") == 17
    assert r.notify_code(1, "R-U-THERE-ACK") == 36137
    assert r.notify_code(2, "NOPE") is None
    assert r.NotifyV2.NO_PROPOSAL_CHOSEN == r.notify_code(2, "NO_PROPOSAL_CHOSEN")


# --------------------------------------------------------------------------- transforms


def test_transform_types():
    assert [r.transform_type_name(t) for t in range(1, 13)] == [
        "ENCR", "PRF", "INTEG", "KE", "ESN", "ADDKE1", "ADDKE2", "ADDKE3", "ADDKE4", "ADDKE5",
        "ADDKE6", "ADDKE7"]
    assert r.transform_type_name(0) == "UNKNOWN_0"
    assert r.transform_type_name(250) == "PRIVATE_USE_250"


def test_transform_ids():
    assert r.transform_name(1, 12) == "ENCR_AES_CBC"
    assert r.transform_name(1, 20) == "ENCR_AES_GCM_16"
    assert r.transform_name(1, 28) == "ENCR_CHACHA20_POLY1305"
    assert r.transform_name(2, 5) == "PRF_HMAC_SHA2_256"
    assert r.transform_name(2, 9) == "PRF_HMAC_STREEBOG_512"
    assert r.transform_name(3, 12) == "AUTH_HMAC_SHA2_256_128"
    assert r.transform_name(3, 14) == "AUTH_HMAC_SHA2_512_256"
    assert r.transform_name(4, 14) == "MODP_2048"
    assert r.transform_name(4, 31) == "CURVE_25519"
    assert r.transform_name(7, 36) == "ML_KEM_768"  # ADDKE2 uses the KE table (RFC 9370)
    assert r.transform_name(5, 1) == "Extended Sequence Numbers"
    assert r.transform_name(1, 17) == "ENCR_UNKNOWN_17"
    assert r.transform_name(1, 1025) == "ENCR_PRIVATE_USE_1025"
    assert r.transform_name(99, 1) == "UNKNOWN_99_UNKNOWN_1"


def test_encr_properties():
    assert r.ENCR[3].block_bits == 64 and not r.ENCR[3].aead
    assert r.ENCR[12].block_bits == 128
    assert r.ENCR[20].aead and r.ENCR[20].icv == 16
    assert r.ENCR[14].icv == 8 and r.ENCR[19].icv == 12
    assert r.ENCR[28].aead
    assert not r.ENCR[13].aead


def test_groups_and_strength():
    g = r.group(14)
    assert (g.short, g.keyword, g.kind, g.bits, g.strength) == ("MODP_2048", "modp2048", "MODP", 2048, 112)
    assert r.group(2).strength == 80 and r.group(15).strength == 128
    assert r.group(19).strength == 128 and r.group(20).strength == 192 and r.group(21).strength == 256
    assert r.group(31).strength == 128 and r.group(32).strength == 224
    assert [r.group(n).keyword for n in (35, 36, 37)] == ["mlkem512", "mlkem768", "mlkem1024"]
    modp = [r.group(n).strength for n in (1, 2, 5, 14, 15, 16, 17, 18)]
    assert modp == sorted(modp) and len(set(modp)) == len(modp)
    assert not r.group(3).ikev2 and r.group(14).ikev2
    assert r.group(99) is None
    assert r.group_name(99) == "GROUP_UNKNOWN_99"
    for n, grp in r.GROUPS.items():
        assert grp.strength <= 256 and (n == 0 or grp.strength > 0)


def test_keywords_are_unique():
    seen: dict[str, str] = {}
    for table in (r.ENCR, r.PRF, r.INTEG, r.ESN, r.GROUPS):
        for entry in table.values():
            if entry.keyword:
                assert entry.keyword not in seen or table is r.INTEG and entry.keyword.endswith("gmac"), entry
                seen[entry.keyword] = entry.name


# --------------------------------------------------------------------------- proposal strings


@pytest.mark.parametrize("transforms, expected", [
    ([(1, 12, 256), (3, 12), (2, 5), (4, 14)], "aes256-sha256-modp2048"),
    ([(1, 12, 128), (3, 2), (2, 2), (4, 2)], "aes128-sha1-modp1024"),
    # PRF differs from the one derived from INTEG → printed
    ([(1, 12, 256), (3, 12), (2, 7), (4, 19)], "aes256-sha256-prfsha512-ecp256"),
    # AEAD: no INTEG, so the PRF always prints; INTEG NONE is dropped
    ([(1, 20, 256), (3, 0), (2, 6), (4, 20)], "aes256gcm16-prfsha384-ecp384"),
    ([(1, 28), (2, 5), (4, 31)], "chacha20poly1305-prfsha256-curve25519"),
    ([(1, 14, 128), (5, 1)], "aes128ccm8-esn"),
    ([(1, 3), (3, 1), (4, 5), (5, 0)], "3des-md5-modp1536-noesn"),
    # several of one type, order kept inside a type; ENCR-INTEG-PRF-KE-ADDKE-ESN across types
    ([(4, 14), (2, 5), (2, 2), (3, 12), (3, 2), (1, 12, 256), (1, 12, 128), (6, 36)],
     "aes256-aes128-sha256-sha1-modp2048-ke1_mlkem768"),
    ([(1, 12, None), (3, 5), (4, 28)], "aes-aesxcbc-ecp256bp"),
    ([(1, 4), (3, 3), (4, 1)], "rc5_cbc-des_mac-modp768"),
    ([(1, 1500), (4, 500)], "encr1500-ke500"),
    ([], ""),
])
def test_proposal_string(transforms, expected):
    assert r.proposal_string(transforms) == expected


def test_proposal_log_string():
    t = [(4, 14), (2, 5), (3, 12), (1, 12, 256)]
    assert r.proposal_log_string(t, protocol=1) == "IKE:AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048"
    assert r.proposal_log_string([(1, 20, 128), (5, 0)], protocol=3) == "ESP:AES_GCM_16_128/NO_EXT_SEQ"
    assert r.proposal_log_string([(1, 3), (3, 2)]) == "3DES_CBC/HMAC_SHA1_96"


def test_v1_proposal_strings():
    assert r.v1_proposal_string(7, 2, 2, 256) == "aes256-sha1-modp1024"
    assert r.v1_proposal_string(5, 1, 2) == "3des-md5-modp1024"
    assert r.v1_proposal_string(7, 4, 14, 128) == "aes128-sha256-modp2048"
    assert r.v1_proposal_string(1, 1) == "des-md5"
    assert r.v1_esp_proposal_string(12, 2, keylen=128) == "aes128-sha1"
    assert r.v1_esp_proposal_string(3, 1, 5) == "3des-md5-modp1536"
    assert r.v1_esp_proposal_string(20, None, keylen=256, esn=True) == "aes256gcm16-esn"
    # IKEv1 ESP 22/23 are not the IKEv2 ENCR numbers 22/23
    assert r.V1_ESP_TO_ENCR[22] == 23 and r.V1_ESP_TO_ENCR[23] == 21


def test_v1_tables():
    assert r.V1_ENCR[7] == "AES-CBC" and r.V1_HASH[2] == "SHA"
    assert r.V1_AUTH[1] == "Pre-shared key" and r.V1_AUTH[65001] == "XAUTHInitPreShared"
    assert r.V1_AUTH[65010] == "XAUTHRespRSARevisedEncryption"
    assert r.V1_ENCAP_MODE[3] == "UDP-Encapsulated-Tunnel" and 61443 in r.V1_ENCAP_UDP
    assert r.v1_transform_name(3, 12) == "ESP_AES-CBC"
    assert r.v1_transform_name(2, 3) == "AH_SHA"
    assert r.v1_transform_name(1, 1) == "KEY_IKE"
    assert r.v1_transform_name(3, 200) == "UNKNOWN_200"
    assert r.CFG_ATTRIBUTES_V1[16521] == "XAUTH_USER_NAME"
    assert r.CFG_ATTRIBUTES_V1[16527] == "XAUTH_STATUS"
    assert r.id_type_name(1, 1) == "IPV4_ADDR" and r.id_type_name(2, 3) == "ID_RFC822_ADDR"
    assert r.id_type_name(2, 13) == "ID_NULL"
    assert r.AUTH_METHODS_V2[14] == "Digital Signature"
    assert r.TS_TYPES[7] == "TS_IPV4_ADDR_RANGE"
    assert r.protocol_name(2, 3) == "ESP" and r.protocol_name(1, 3) == "PROTO_IPSEC_ESP"


# --------------------------------------------------------------------------- posture


def test_suricata_weak_criteria_are_all_flagged():
    for kind, ids in r.SURICATA_WEAK.items():
        for code in ids:
            assert r.weak_reason(kind, code), (kind, code)
    assert r.SURICATA_WEAK["ke"] == {1, 2, 5, 22}


@pytest.mark.parametrize("kind, code, fragment", [
    ("encr", 3, "Sweet32"),
    ("encr", 7, "Sweet32"),
    ("encr", 2, "DES"),
    ("encr", 11, "no encryption"),
    ("prf", 1, "MD5"),
    ("integ", 2, "SHA-1"),
    ("ke", 2, "1024-bit MODP"),
    ("ke", 2, "Logjam"),
    ("v1_encr", 5, "Sweet32"),  # 3DES-CBC
    ("v1_encr", 1, "DES"),
    ("v1_hash", 1, "MD5"),
    ("v1_hash", 2, "SHA-1"),
    ("v1_group", 1, "768"),
    ("v1_group", 5, "1536"),
    ("v1_esp", 3, "Sweet32"),
    ("v1_esp", 10, "RC4"),
    ("v1_esp", 11, "no encryption"),
    ("v1_auth_alg", 1, "MD5"),
    ("v1_ah", 3, "SHA-1"),
])
def test_weak_reasons(kind, code, fragment):
    reason = r.weak_reason(kind, code)
    assert reason and fragment in reason


@pytest.mark.parametrize("kind, code", [
    ("encr", 12), ("encr", 20), ("encr", 28), ("prf", 5), ("integ", 12), ("integ", 0),
    ("ke", 14), ("ke", 19), ("ke", 31), ("ke", 36), ("esn", 1), ("v1_encr", 7), ("v1_hash", 4),
    ("v1_group", 14), ("v1_esp", 12), ("v1_auth_alg", 5), ("v1_ah", 5), ("encr", 999),
])
def test_strong_algorithms_are_not_weak(kind, code):
    assert r.weak_reason(kind, code) is None
    assert not r.is_weak(kind, code)


def test_weak_kind_must_be_known():
    with pytest.raises(ValueError):
        r.weak_reason("cipher", 3)
    for kind in r.WEAK_KINDS:
        r.weak_reason(kind, 1)


def test_weak_groups_are_below_112_bits():
    for code in r.WEAK["ke"]:
        # 23/24 are flagged for their small RFC 5114 subgroups (RFC 8247), not their size
        assert r.group(code).strength < 112 or code in (23, 24), code
    for code, grp in r.GROUPS.items():
        if code and grp.strength < 112:
            assert r.weak_reason("ke", code), code


# --------------------------------------------------------------------------- hygiene


def test_tables_are_well_formed():
    for name in dir(r):
        table = getattr(r, name)
        if isinstance(table, dict) and name.isupper() and table and not name.startswith("_") \
                and name not in ("WEAK", "SURICATA_WEAK") and not name.endswith("_BY_NAME"):
            for key, value in table.items():
                assert isinstance(key, int), (name, key)
                assert value, (name, key)


def test_dissect_never_imports_pcapvpn():
    text = (REPO / "dissect" / "vpn" / "registry.py").read_text()
    assert "import pcapvpn" not in text and "from pcapvpn" not in text
    assert not (REPO / "dissect" / "__init__.py").exists()


# --------------------------------------------------------------------------- oracle: tshark 4.0


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


@pytest.fixture(scope="module")
def tshark_values() -> dict[str, list[list[tuple[int, int, str]]]]:
    """``tshark -G values`` for isakmp.*, split into blocks where a field is registered twice
    (IKEv1 then IKEv2: numbering restarts)."""
    out = subprocess.run([tshark_path(), "-G", "values"], capture_output=True, text=True, timeout=300).stdout
    raw: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    for line in out.splitlines():
        p = line.split("\t")
        if len(p) >= 4 and p[1].startswith("isakmp."):
            if p[0] == "V":
                raw[p[1]].append((int(p[2]), int(p[2]), p[3]))
            elif p[0] == "R" and len(p) >= 5:
                raw[p[1]].append((int(p[2]), int(p[3]), p[4]))
    if not raw:
        pytest.skip("tshark -G values printed no isakmp value strings")
    blocks: dict[str, list[list[tuple[int, int, str]]]] = {}
    for field, rows in raw.items():
        split: list[list[tuple[int, int, str]]] = [[]]
        last = -1
        for row in rows:
            if row[0] < last and split[-1]:
                split.append([])
            split[-1].append(row)
            last = row[0]
        blocks[field] = split
    return blocks


# Known differences, number → reason.  Anything tshark names that we do not (or name
# differently) and is not listed here fails the test.
NOTIFY_EXCEPTIONS = {
    (2, 46): "tshark 4.0 repeats CHILD_SA_NOT_FOUND for 46; IANA: AUTHORIZATION_FAILED (RFC 9838)",
    (2, 16429): "renamed GROUP_SENDER by RFC 9838; tshark 4.0 has the old SENDER_REQUEST_ID",
}


def _compare(blocks, ours, *, field_label, exceptions=(), strip=()) -> list[str]:
    problems = []
    for lo, hi, theirs in blocks:
        if lo != hi or _norm(theirs).startswith(("reserved", "unassigned", "unknown", "undefined")):
            continue
        mine = ours.get(lo)
        if lo in exceptions:
            continue
        if mine is None:
            problems.append(f"{field_label} {lo}: tshark {theirs!r}, ours missing")
            continue
        a, b = _norm(mine), _norm(theirs)
        for prefix in strip:
            a = a.removeprefix(prefix)
            b = b.removeprefix(prefix)
        if a != b:
            problems.append(f"{field_label} {lo}: tshark {theirs!r}, ours {mine!r}")
    return problems


@pytest.mark.oracle
def test_notify_names_match_tshark(tshark_values):
    v1, v2 = tshark_values["isakmp.notify.msgtype"]
    seen = 0
    problems = []
    for version, block, table in ((1, v1, r.NOTIFY_V1), (2, v2, r.NOTIFY_V2)):
        exc = {code for (v, code) in NOTIFY_EXCEPTIONS if v == version}
        problems += _compare(block, table, field_label=f"IKEv{version} notify", exceptions=exc)
        seen += sum(1 for lo, hi, _ in block if lo == hi)
        for (v, code), why in NOTIFY_EXCEPTIONS.items():
            if v == version:
                print(f"known difference IKEv{v} notify {code}: {why}")
    assert seen > 100
    assert not problems, "\n".join(problems)


@pytest.mark.oracle
def test_other_names_match_tshark(tshark_values):
    def one(field, index=0):
        return tshark_values[field][index]

    def vals(table, attr):
        return {k: getattr(v, attr) for k, v in table.items()}

    problems = []
    problems += _compare(one("isakmp.exchangetype"), vals(r.EXCHANGE_TYPES, "name"), field_label="exchange")
    payloads = {**vals(r.PAYLOAD_TYPES_V1, "name"), **vals(r.PAYLOAD_TYPES_V2, "name")}
    problems += _compare(one("isakmp.nextpayload"), payloads, field_label="payload")
    problems += _compare(one("isakmp.tf.id.encr"), vals(r.ENCR, "name"), field_label="ENCR", exceptions={
        18, 19, 20,  # tshark prints "AES-GCM with a 8 octet ICV"; IANA: ENCR_AES_GCM_8 ...
        25, 26, 27,  # "ENCR_CAMELLIA_CCM with an 8-octet ICV"; IANA: ENCR_CAMELLIA_CCM_8 ...
    })
    problems += _compare(one("isakmp.tf.id.prf"), vals(r.PRF, "name"), field_label="PRF", exceptions={
        4,  # tshark "PRF_AES128_CBC" (typo); IANA PRF_AES128_XCBC (RFC 4434)
        8,  # tshark "PRF_AES128_CMAC6" (typo); IANA PRF_AES128_CMAC (RFC 4615)
    })
    problems += _compare(one("isakmp.tf.id.integ"), vals(r.INTEG, "name"), field_label="INTEG")
    problems += _compare(one("isakmp.tf.id.esn"), vals(r.ESN, "name"), field_label="ESN")
    problems += _compare(one("isakmp.tf.id.dh"), vals(r.GROUPS, "name"), field_label="KE", exceptions={
        1, 2,  # tshark "Default 768-bit" / "Alternate 1024-bit" (RFC 2409 wording)
        3, 4,  # tshark appends a second "group"
    })
    problems += _compare(one("isakmp.ike.attr.encryption_algorithm"), r.V1_ENCR, field_label="v1 encr",
                         exceptions={127, 128, 129})  # SM1/SM4: Chinese national algorithms, not IANA
    problems += _compare(one("isakmp.ike.attr.hash_algorithm"), r.V1_HASH, field_label="v1 hash",
                         exceptions={20})  # SM3, not IANA
    problems += _compare(one("isakmp.ike.attr.authentication_method"), r.V1_AUTH, field_label="v1 auth")
    problems += _compare(one("isakmp.ike.attr.type"), r.V1_IKE_ATTR, field_label="v1 attr",
                         exceptions={17, 20})  # not in RFC 2409; left out until sourced
    problems += _compare(one("isakmp.ipsec.attr.type"), r.V1_IPSEC_ATTR, field_label="ipsec attr")
    problems += _compare(one("isakmp.ipsec.attr.auth_algorithm"), r.V1_AUTH_ALG, field_label="auth alg")
    problems += _compare(one("isakmp.ipsec.attr.encap_mode"), r.V1_ENCAP_MODE, field_label="encap",
                         exceptions={61440})  # Check Point private value, not documented publicly
    problems += _compare(one("isakmp.prop.protoid", 0), r.PROTOCOL_IDS_V1, field_label="v1 proto",
                         strip=("proto",))
    problems += _compare(one("isakmp.prop.protoid", 1), r.PROTOCOL_IDS_V2, field_label="v2 proto")
    problems += _compare(one("isakmp.id.type", 0), r.ID_TYPES_V1, field_label="v1 id",
                         exceptions={12})  # RFC 3554 ID_LIST; tshark says KEY_LIST
    problems += _compare(one("isakmp.id.type", 1), r.ID_TYPES_V2, field_label="v2 id", strip=("id",),
                         exceptions={12})  # IANA 12 = ID_FC_NAME (RFC 4595); tshark says KEY_LIST
    problems += _compare(one("isakmp.cert.encoding", 0), r.CERT_ENCODINGS_V1, field_label="v1 cert")
    problems += _compare(one("isakmp.cert.encoding", 1), r.CERT_ENCODINGS_V2, field_label="v2 cert",
                         exceptions={5, 6})  # 5 unused in IKEv2; RFC 7296 spells "Kerberos Token"
    problems += _compare(one("isakmp.auth.method"), r.AUTH_METHODS_V2, field_label="v2 auth")
    problems += _compare(one("isakmp.cfg.type", 0), r.CFG_TYPES_V1, field_label="v1 cfg")
    problems += _compare(one("isakmp.cfg.type", 1), r.CFG_TYPES_V2, field_label="v2 cfg")
    problems += _compare(one("isakmp.cfg.attr.type", 0), r.CFG_ATTRIBUTES_V1, field_label="v1 cfg attr",
                         exceptions={
                             16387, 16388, 16389, 16400, 16401, 16402,  # Check Point private, undocumented
                             16525,  # tshark "XAUTH_CHALLANGE" (typo)
                             28675, 28678,  # Unity vendor names: we use strongSwan's spelling
                         })
    problems += _compare(one("isakmp.cfg.attr.type", 1), r.CP_ATTRIBUTES_V2, field_label="v2 cfg attr",
                         exceptions={9})  # RFC 4306 INTERNAL_IP6_NETMASK, reserved since RFC 5996
    problems += _compare(one("isakmp.ts.type"), r.TS_TYPES, field_label="ts")
    problems += _compare(one("isakmp.notify.data.signature_hash_algorithms"), r.HASH_ALGORITHMS_V2,
                         field_label="hash alg")
    problems += _compare(one("isakmp.notify.data.ipcomp.transform_id"), r.IPCOMP_TRANSFORM,
                         field_label="ipcomp", strip=("ipcomp",))
    problems += _compare(one("isakmp.sa.doi"), r.DOI, field_label="doi")
    assert not problems, "\n".join(problems)


def test_enums_are_the_tables_numbers():
    """Every table of names is keyed by its enum's members, one member per number, so a number
    is written once (the enum) and named twice at most (the enum member, the printed name)."""
    pairs = [(r.ExchangeType, r.EXCHANGE_TYPES), (r.PayloadV1, r.PAYLOAD_TYPES_V1),
             (r.PayloadV2, r.PAYLOAD_TYPES_V2), (r.NotifyV1, r.NOTIFY_V1), (r.NotifyV2, r.NOTIFY_V2),
             (r.TransformType, r.TRANSFORM_TYPES), (r.IdTypeV1, r.ID_TYPES_V1),
             (r.IdTypeV2, r.ID_TYPES_V2), (r.IkeAttrV1, r.V1_IKE_ATTR),
             (r.IpsecAttrV1, r.V1_IPSEC_ATTR), (r.TsType, r.TS_TYPES), (r.CfgType, r.CFG_TYPES_V2),
             (r.CfgAttributeV2, r.CP_ATTRIBUTES_V2)]
    for enum, table in pairs:
        assert sorted(table) == sorted({int(m) for m in enum}), enum.__name__
    # IKEv1 Mode-CFG: IKEv2's first 15 attributes, then its own
    assert r.CFG_ATTRIBUTES_V1 == {**{k: v for k, v in r.CP_ATTRIBUTES_V2.items() if k <= 15},
                                   **{int(m): m.name for m in r.CfgAttributeV1}}
    # names as printed: IKEv1 notifies with hyphens, the rest as the enum spells them
    assert r.NOTIFY_V1[r.NotifyV1.R_U_THERE_ACK] == "R-U-THERE-ACK"
    assert r.NOTIFY_V2[r.NotifyV2.USE_ASSIGNED_HoA] == "USE_ASSIGNED_HoA"
    for m in r.NotifyV2:
        assert r.notify_name(2, m) == m.name
    for m in r.ExchangeType:
        assert r.exchange_name(m) == r.EXCHANGE_TYPES[m].name


def test_enum_members_print_as_numbers():
    """A member stands wherever the number stood: str, format, JSON, dict keys (Python 3.10 too,
    whose IntEnum str() would print the member's name)."""
    import json

    m = r.ExchangeType.IKE_SA_INIT
    assert (str(m), f"{m}", f"{m:>4}", "%s" % m, "%d" % m) == ("34", "34", "  34", "34", "34")
    assert json.dumps({"exch": m, "list": [r.NotifyV2.COOKIE]}) == '{"exch": 34, "list": [16390]}'
    assert {34: "x"}[m] == "x" and {m: "x"}[34] == "x" and hash(m) == hash(34)
    assert repr(m) == "<ExchangeType.IKE_SA_INIT: 34>"
    assert r.notify_types(1) is r.NotifyV1 and r.notify_types(2) is r.NotifyV2
