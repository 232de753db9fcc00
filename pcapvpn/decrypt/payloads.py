"""What decrypted IKE payloads say: dissect's records gathered as :class:`InnerPayloads` for
tracking, the rules and the report, with certificate summaries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from dissect.vpn.ident import id_text, selectors
from dissect.vpn.registry import CERT_X509_SIGNATURE, PayloadV1, PayloadV2, ProtocolId


def cert_summary(der: bytes):
    """Subject, issuer, validity and subjectAltNames of an X.509 certificate (DER), or None when
    it does not parse."""
    try:
        from cryptography import x509

        c = x509.load_der_x509_certificate(bytes(der))
    except Exception:  # noqa: BLE001 - any parse failure: not a certificate we can read
        return None
    try:
        nb = c.not_valid_before_utc.timestamp()
        na = c.not_valid_after_utc.timestamp()
    except AttributeError:  # pragma: no cover - cryptography < 42
        import calendar

        nb = calendar.timegm(c.not_valid_before.utctimetuple())
        na = calendar.timegm(c.not_valid_after.utctimetuple())
    sans = []
    try:
        ext = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        for g in ext:
            sans.append(str(getattr(g, "value", g)))
    except Exception:  # noqa: BLE001 - no SAN extension (or an unreadable one)
        pass
    try:
        subject = c.subject.rfc4514_string()
        issuer = c.issuer.rfc4514_string()
    except Exception:  # noqa: BLE001
        subject = issuer = "?"
    return {"subject": subject, "issuer": issuer, "not_before": nb, "not_after": na,
            "subject_alt_names": sans, "serial": format(c.serial_number, "x")}


class ChildSpi(NamedTuple):
    """The SPI a decrypted SA proposal offers for an AH / ESP child SA."""

    protocol: int  # ProtocolId.AH / ESP
    spi: bytes
    value: int  # the SPI as an integer


@dataclass(slots=True)
class InnerPayloads:
    """What the decrypted payloads of an IKE message say (:func:`describe_inner`), for tracking,
    the rules and the report.  Records are dissect's where dissect has them."""

    #: the first inner payload type
    first: int | None
    payload_types: list = field(default_factory=list)
    #: Notify (IKEv2) / Notification (IKEv1) records: ``n.notify_type``, ``n.invalid_spi``,
    #: ``n.dpd_seq`` ...
    notifies: list = field(default_factory=list)
    #: Delete records: ``protocol``, ``spis`` (bytes), ``spi_values`` (ints)
    deletes: list = field(default_factory=list)
    #: AH / ESP SPIs offered in SA proposals (:class:`ChildSpi`)
    child_spis: list = field(default_factory=list)
    #: the SA payload's proposal records
    proposals: list = field(default_factory=list)
    #: ``(payload type, id type, text)`` of each ID payload
    ids: list = field(default_factory=list)
    #: traffic selectors of the initiator / the responder (:func:`dissect.vpn.ident.selectors`)
    ts_initiator: list = field(default_factory=list)
    ts_responder: list = field(default_factory=list)
    #: :func:`cert_summary` of each X.509 CERT, or ``{"encoding": n}``
    certs: list = field(default_factory=list)
    #: ``(cfg type, [(attribute, value)])`` of CP / Mode-CFG payloads
    config: list = field(default_factory=list)
    #: ``(code, type)`` of EAP payloads
    eap: list = field(default_factory=list)
    auth_method: int | None = None


_CHILD_PROTOCOLS = (ProtocolId.AH, ProtocolId.ESP)


def _child_spis(out: InnerPayloads, proposals) -> None:
    out.proposals = proposals
    for pr in proposals:
        if pr.protocol in _CHILD_PROTOCOLS and pr.spi:
            out.child_spis.append(ChildSpi(pr.protocol, pr.spi, pr.spi_value))


def _cert(out: InnerPayloads, p) -> None:
    s = cert_summary(p.data) if p.encoding == CERT_X509_SIGNATURE else None
    out.certs.append(s if s is not None else {"encoding": p.encoding})


def describe_inner(version: int, payloads, first) -> InnerPayloads:
    """What decrypted payloads say, as an :class:`InnerPayloads`."""
    out = InnerPayloads(first)
    qm_ids = []
    for p in payloads or ():
        t = p.type
        out.payload_types.append(t)
        if version == 2:
            if t == PayloadV2.N and hasattr(p, "notify_type"):
                out.notifies.append(p)
            elif t == PayloadV2.D and hasattr(p, "spis"):
                out.deletes.append(p)
            elif t == PayloadV2.SA and hasattr(p, "proposals"):
                _child_spis(out, p.proposals)
            elif t in (PayloadV2.IDI, PayloadV2.IDR) and hasattr(p, "id_type"):
                out.ids.append((t, p.id_type, id_text(p.id_type, p.data)))
            elif t in (PayloadV2.TSI, PayloadV2.TSR) and hasattr(p, "selectors"):
                (out.ts_initiator if t == PayloadV2.TSI else out.ts_responder).extend(
                    selectors(p, 2))
            elif t == PayloadV2.CERT and hasattr(p, "encoding"):
                _cert(out, p)
            elif t == PayloadV2.CP and hasattr(p, "cfg_type"):
                out.config.append((p.cfg_type, list(p.attributes)))
            elif t == PayloadV2.EAP and hasattr(p, "code"):
                out.eap.append((p.code, p.eap_type))
            elif t == PayloadV2.AUTH and hasattr(p, "method"):
                out.auth_method = p.method
        else:
            if t == PayloadV1.N and hasattr(p, "notify_type"):
                out.notifies.append(p)
            elif t == PayloadV1.D and hasattr(p, "spis"):
                out.deletes.append(p)
            elif t == PayloadV1.SA and hasattr(p, "proposals"):
                _child_spis(out, p.proposals)
            elif t == PayloadV1.ID and hasattr(p, "id_type"):
                out.ids.append((t, p.id_type, id_text(p.id_type, p.data)))
                qm_ids.append(p)
            elif t == PayloadV1.CERT and hasattr(p, "encoding"):
                _cert(out, p)
            elif t == PayloadV1.ATTR and hasattr(p, "cfg_type"):
                out.config.append((p.cfg_type, list(p.attributes)))
    if version == 1 and len(qm_ids) == 2:
        # Quick Mode IDci / IDcr (RFC 2409 §5.5): the initiator's and the responder's selectors
        out.ts_initiator = selectors(qm_ids[0], 1)
        out.ts_responder = selectors(qm_ids[1], 1)
    return out


#: configuration attributes whose values are secrets and never leave this module as values:
#: XAUTH USER-PASSWORD 16522 and PASSCODE 16525 (draft-beaulieu-ike-xauth-02 §6.1)
SECRET_CONFIG_ATTRIBUTES = frozenset((16522, 16525))
