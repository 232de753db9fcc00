"""Every JSON report validates against docs/schema.json; docs/findings.md is generated from the
registry; every declared code has a meaning and advice."""

from __future__ import annotations

import json

import jsonschema
import pytest

from conftest import REPO, analysed, ipsec_captures, rel
from pcapvpn.findings import REGISTRY
from pcapvpn.report import render
from pcapvpn.rules import load_all

SCHEMA = json.loads((REPO / "docs" / "schema.json").read_text())

#: the codes the analyze issue names (they must all exist)
REQUIRED_CODES = """IKE_NO_RESPONSE ICMP_UNREACHABLE IKE_NO_PROPOSAL_CHOSEN IKE_INVALID_KE
IKE_VERSION_MISMATCH IKE_ERROR_NOTIFY IKE_RETRANSMISSION IKE_COOKIE IKE_WEAK_CRYPTO
IKE_AGGRESSIVE_MODE_PSK IKE_SIMULTANEOUS_INIT IKE_AUTH_FAILED NAT_DETECTED NAT_T_BLOCKED
NAT_T_NOT_USED NAT_KEEPALIVE_MISSING NAT_MAPPING_CHANGED IKE_FRAGMENTATION_LOSS IKE_TS_UNACCEPTABLE
CHILD_SA_FAILED ESP_ONE_WAY ESP_SPI_MISMATCH ESP_SEQUENCE_GAP ESP_REPLAY ESP_REORDER ESP_NO_TRAFFIC
ESP_FRAGMENTED PATH_MTU_ICMP MTU_BLACK_HOLE DPD_TIMEOUT IKE_SA_FLAPPING CAPTURE_DROPS
CAPTURE_DUPLICATES CAPTURE_TRUNCATED CAPTURE_ONE_DIRECTION CAPTURE_MID_SESSION DECODE_ERRORS""".split()


@pytest.mark.parametrize("path", ipsec_captures(), ids=rel)
def test_json_report_validates(path):
    doc = json.loads(render(analysed(path).report, "json"))
    jsonschema.validate(doc, SCHEMA)
    # the same finding ids referenced by tunnels exist
    ids = {f["id"] for f in doc["findings"]}
    for t in doc["tunnels"]:
        assert set(t["findings"]) <= ids
        assert t["primary_finding"] is None or t["primary_finding"] in ids


def test_schema_rejects_a_broken_report():
    doc = json.loads(render(analysed(ipsec_captures()[0]).report, "json"))
    doc["schema_version"] = "9"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, SCHEMA)


def test_required_codes_declared():
    load_all()
    missing = [c for c in REQUIRED_CODES if c not in REGISTRY]
    assert not missing, f"codes not declared: {missing}"
    for spec in REGISTRY.values():
        assert spec.meaning.strip(), spec.code
        assert spec.advice, f"{spec.code} has no advice"


def test_findings_doc_in_step():
    from pcapvpn.rules.catalog import render as catalog

    doc = (REPO / "docs" / "findings.md").read_text()
    assert doc == catalog(), ("docs/findings.md is out of date: run "
                              "`python -m pcapvpn.rules.catalog > docs/findings.md`")
