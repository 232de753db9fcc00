"""--lang ja: the parser's reasons for undecodable frames and damaged ranges are translated
(issue 14, "Correct and complete rendering").

``dissect`` imports nothing from ``pcapvpn`` and writes its reasons in English
(:class:`dissect.vpn.errors.DissectError`, the capture readers' damage reasons); the report
translates them with the catalog's ``msgctxt "reason"`` entries (:meth:`pcapvpn.i18n.Lang.reason`):
each an English template with ``{name}`` placeholders where the code formats a value.  This test
finds every such reason in the code by an AST walk and fails on one without a Japanese entry, then
renders damaged captures in Japanese and fails on any English reason left.
"""

from __future__ import annotations

import ast
import re
from functools import lru_cache
from pathlib import Path

import pytest

from conftest import REPO
from pcapvpn import i18n

#: the calls whose first argument is a reason
_RAISERS = {"DissectError", "_Corrupt"}
#: functions of the capture readers (the package dissect/vpn/capture/, pcapvpn/sources.py) that
#: write a damaged range's reason or a reader's warning line: every string they build
_REASON_FUNCS = {"_pcap_tail", "_pcapng_tail", "_corrupt", "_implausible", "_runs_past",
                 "_ts_reason", "text", "warnings", "_read_error"}
_READERS = ("dissect/vpn/capture/", "pcapvpn/sources.py")
#: helpers that raise "{what} truncated": their ``what`` argument (a literal) is a reason's value
_NEED = {"_need": 3}
#: pcapvpn's own reasons for an undecodable frame (decoder, TCP streams, IKE tracker)
_PCAPVPN = ("pcapvpn/decode.py", "pcapvpn/tcp_streams.py", "pcapvpn/track/ike.py",
            "pcapvpn/sources.py")


def _name(e: ast.expr, used: set[str]) -> str:
    if isinstance(e, ast.Name):
        n = e.id
    elif isinstance(e, ast.Attribute):
        n = e.attr
    elif isinstance(e, ast.Subscript) and isinstance(e.value, ast.Name):
        n = e.value.id
    else:
        n = "n"
    n = re.sub(r"[^a-z0-9_]", "", n.lower()).strip("_") or "n"
    if n[0].isdigit():
        n = "n" + n
    base, i = n, 2
    while n in used:
        n, i = f"{base}{i}", i + 1
    used.add(n)
    return n


def template(node: ast.expr) -> str | None:
    """The reason template of a string or f-string (each formatted value → ``{name}``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.replace("{", "{{").replace("}", "}}")
    if isinstance(node, ast.JoinedStr):
        used: set[str] = set()
        out = ""
        for v in node.values:
            if isinstance(v, ast.Constant):
                out += str(v.value).replace("{", "{{").replace("}", "}}")
            elif isinstance(v, ast.FormattedValue):
                out += "{" + _name(v.value, used) + "}"
        return out
    return None


def _variants(node: ast.expr) -> list[str]:
    """The templates an expression can give: ``a if c else b`` both, ``"x " + (...)`` joined."""
    if isinstance(node, ast.IfExp):
        return _variants(node.body) + _variants(node.orelse)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        # a value added to a sentence ("TCP-encapsulated stream: " + e.reason) is a placeholder
        return [a + b for a in _variants(node.left) or ["{" + _name(node.left, set()) + "}"]
                for b in _variants(node.right) or ["{" + _name(node.right, set()) + "}"]]
    t = template(node)
    return [] if t is None else [t]


@lru_cache(maxsize=None)
def reason_templates() -> dict[str, str]:
    """Every reason the parsers and the decoder write: template → where (file:line).  Also the
    literal ``what`` values of ``_need(...)`` ("proposal header"), which fill ``{what} truncated``."""
    out: dict[str, str] = {}
    files = sorted((REPO / "dissect" / "vpn").rglob("*.py")) + [REPO / p for p in _PCAPVPN]
    for f in files:
        tree = ast.parse(f.read_text(encoding="utf-8"))
        where = str(f.relative_to(REPO))
        found: list[ast.expr] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                fn = node.func
                name = fn.id if isinstance(fn, ast.Name) else (
                    fn.attr if isinstance(fn, ast.Attribute) else None)
                if name in _RAISERS and node.args:
                    found.append(node.args[0])
                elif name == "_error" and len(node.args) >= 2 and f.parts[-2:][0] == "pcapvpn":
                    found.append(node.args[1])
                elif name == "_parse_error" and len(node.args) >= 2:
                    found.append(node.args[1])
                elif (name == "append" and isinstance(fn, ast.Attribute)
                      and isinstance(fn.value, ast.Name) and fn.value.id == "errors"
                      and node.args and isinstance(node.args[0], ast.Tuple)):
                    found.append(node.args[0].elts[0])  # an IKE message's payload errors
                elif name in _NEED and len(node.args) > _NEED[name]:
                    found.append(node.args[_NEED[name]])
                elif (name == "append" and isinstance(fn, ast.Attribute)
                      and isinstance(fn.value, ast.Attribute) and fn.value.attr == "notes"
                      and node.args and isinstance(node.args[0], ast.Tuple)):
                    found.append(node.args[0].elts[1])  # a pcapng reader's note
            elif (isinstance(node, ast.FunctionDef) and node.name in _REASON_FUNCS
                  and where.startswith(_READERS)):
                found += [s for s in ast.walk(node) if isinstance(s, ast.JoinedStr)]
                found += [r.value for r in ast.walk(node)
                          if isinstance(r, ast.Return) and isinstance(r.value, ast.Constant)]
            elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict) and any(
                    isinstance(t, ast.Name) and t.id == "MESSAGE_NAMES" for t in node.targets):
                found += [v for v in node.value.values if v is not None]  # WireGuard's names
            elif isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id in ("reason", "_EMPTY", "OTHER_REASONS")
                    for t in node.targets):
                found.append(node.value)
            elif (isinstance(node, ast.Assign) and where.startswith(_READERS) and any(
                    isinstance(t, ast.Attribute) and t.attr == "error" for t in node.targets)):
                found.append(node.value)  # a stream's error: the damaged range at its end
        for e in found:
            for t in _variants(e):
                if re.search(r"[a-z]{2}", i18n._PLACEHOLDER.sub("", t)):
                    out.setdefault(t, f"{where}:{e.lineno}")
    return out


@pytest.fixture()
def marked(monkeypatch):
    monkeypatch.setattr(i18n, "mark_values", True)


def test_every_reason_has_a_japanese_entry():
    """Each reason the code writes (and each ``what`` of "{what} truncated") has a
    ``msgctxt "reason"`` entry with the same placeholders."""
    tr = i18n.translations("ja")
    found = reason_templates()
    assert len(found) > 150  # the walk sees the parsers (about 170 raise sites)
    bad = []
    for tmpl, where in found.items():
        ja = tr.pgettext("reason", tmpl)
        if ja == tmpl and not re.fullmatch(r"[A-Z][A-Za-z]+", tmpl):  # ClientHello stays
            bad.append(f"{where}: no Japanese entry for {tmpl!r}")
        elif set(i18n._PLACEHOLDER.findall(ja)) != set(i18n._PLACEHOLDER.findall(tmpl)):
            bad.append(f"{where}: placeholders differ: {tmpl!r} / {ja!r}")
    assert not bad, "\n".join(bad)


def test_reasons_are_matched_with_their_values():
    L = i18n.Lang("ja")
    assert L.reason("L2TP Length 514 does not fit the datagram") == \
        "L2TP の Length 514 がデータグラムに収まらない"
    # a prefix the IKE tracker adds, and a value that is itself translated
    assert L.reason("IKE: proposal header truncated") == "IKE: Proposal ヘッダが途中で切れている"
    assert L.reason("OpenVPN TCP stream: unknown OpenVPN opcode 9") == \
        "OpenVPN の TCP ストリーム: 未知の OpenVPN オペコード 9"
    # the more specific template wins over "{what} truncated"
    assert L.reason("L2TP Ns/Nr truncated") == "L2TP の Ns/Nr が途中で切れている"
    assert L.reason("no such reason") == "no such reason"
    assert i18n.Lang("en").reason("truncated Ethernet header") == "truncated Ethernet header"


# -- damaged captures rendered in Japanese ---------------------------------------------------

def _records(data: bytes):
    """(header, body) of each record of a little-endian microsecond pcap."""
    import struct

    pos = 24
    while pos + 16 <= len(data):
        incl = struct.unpack_from("<I", data, pos + 8)[0]
        yield data[pos:pos + 16], data[pos + 16:pos + 16 + incl]
        pos += 16 + incl


def damaged(src: Path, seed: int) -> bytes:
    """``src`` (a pcap) with frames cut short (their captured length) and bytes overwritten in
    their headers, so that every layer's parser meets truncated and malformed input; the file
    itself ends inside a record and has garbage in its middle (damaged ranges)."""
    import random
    import struct

    rnd = random.Random(seed)
    data = src.read_bytes()
    out = bytearray(data[:24])
    recs = list(_records(data))
    for i, (hdr, body) in enumerate(recs):
        body = bytearray(body)
        r = rnd.random()
        if r < 0.35 and len(body) > 14:
            body = body[:rnd.randrange(1, len(body))]
        elif r < 0.7 and len(body) > 20:
            for _ in range(rnd.randrange(1, 4)):
                body[rnd.randrange(14, min(len(body), 90))] = rnd.randrange(256)
        ts, us, _incl, orig = struct.unpack("<IIII", hdr)
        out += struct.pack("<IIII", ts, us, len(body), orig) + body
        if i == len(recs) // 2:
            out += bytes(rnd.randrange(256) for _ in range(300))
    return bytes(out[:-7])


_SOURCES = ("ikev2_healthy", "ikev1_main_healthy", "ikev2_nat", "ikev2_cert_ikefrag",
            "openvpn_udp_healthy", "openvpn_tcp_tlscrypt_healthy", "wireguard_healthy",
            "libreswan_iketcp_healthy", "ikev2_eap_healthy", "inner_healthy")


def test_damaged_captures_show_japanese_reasons(marked, tmp_path):
    """Captures damaged on purpose (the crash corpus of the readers, and lab captures of every
    protocol with frames cut and overwritten) rendered with ``--lang ja`` in every format: no
    English reason is left, and the reports do show many distinct reasons."""
    import test_i18n_complete as complete
    from conftest import CAPTURES
    from pcapvpn.analysis import run

    paths = sorted((REPO / "tests" / "data" / "fuzz").glob("*.pcap*"))
    for name in _SOURCES:
        for src in sorted((CAPTURES / "lab" / name).glob("*.pcap"))[:1]:
            for seed in range(3):
                p = tmp_path / f"{name}-{seed}.pcap"
                p.write_bytes(damaged(src, seed))
                paths.append(p)
    reasons: set[str] = set()
    problems = []
    for p in paths:
        result = run([str(p)])
        cap = result.report.capture
        reasons |= set(cap.decode_errors_by_reason)
        reasons |= {d.reason for d in getattr(cap, "damage", None) or ()}
        problems += complete._untranslated(result, p.name)
    assert len(reasons) > 30, sorted(reasons)
    assert not problems, f"{len(problems)} English run(s):\n" + "\n".join(problems[:100])


# -- labels the tool composes: path messages, log formats; live's resolved reasons -----------

def test_path_message_labels_are_japanese():
    """The vantage points' path messages (``pcapvpn.track.vantage.segments._ike_label`` with
    the exchange and message id, a fragment number, a copy number) read in Japanese."""
    from types import SimpleNamespace

    from pcapvpn.track.vantage.segments import _ike_label

    L = i18n.Lang("ja")
    made = []
    for version, resp, step, skf in ((2, False, None, (2, 3)), (2, True, None, None),
                                     (1, False, 3, None), (1, False, None, True),
                                     (2, False, None, None)):
        m = SimpleNamespace(version=version, is_response=resp, step=step, skf=skf)
        made.append(f"IKE_AUTH #1 {_ike_label(m)} (copy 2)")
    shown = [L.label(t) for t in made]
    assert shown[0] == "IKE_AUTH #1 要求のフラグメント 2/3 (コピー 2)"
    for text in shown:
        assert not re.search(r"\b(?:request|response|message|fragment|copy)\b", text), text
    assert i18n.Lang("en").label(made[0]) == made[0]


def test_log_format_names_are_japanese():
    """Every log format's name (``dissect.vpn.logs`` dialects' TITLE, shown with its framing
    in the logs table, and the status files' and command outputs' titles) has a Japanese
    entry."""
    from dissect.vpn.logs import registry

    import importlib
    import pkgutil

    import dissect.vpn.logs as logs

    L = i18n.Lang("ja")
    names = [d.TITLE for d in registry.DIALECTS]
    assert len(names) >= 10
    docs = []  # status files and command outputs (each module's DOCUMENTS)
    for mod in pkgutil.iter_modules(logs.__path__):
        docs += [d.title for d in getattr(importlib.import_module(f"{logs.__name__}.{mod.name}"),
                                          "DOCUMENTS", ())]
    assert len(docs) >= 8
    names += docs
    missing = [t for t in names if i18n.translations("ja").pgettext("label", t) == t]
    assert missing == []
    import test_i18n_complete as complete  # a command in a name is code: `wg show`

    assert [L.label(t) for t in names if complete.english_runs(L.label(t))] == []
    for framing in registry.FRAMINGS:
        assert L.text(f"{names[0]} ({framing})") == f"strongSwan charon ログ ({framing})"
    assert L.text(f"{names[1]} (journalctl -o export)") == \
        "libreswan の pluto ログ (journalctl -o export)"


def test_live_resolved_reason_is_japanese():
    """``pcapvpn live --lang ja``: a resolved event says why in Japanese."""
    import io

    import test_i18n_complete as complete
    from pcapvpn.live import RESOLVED_CLEARED, RESOLVED_RECOVERED, TextEvents

    for why in (RESOLVED_RECOVERED, RESOLVED_CLEARED):
        out = io.StringIO()
        TextEvents(out, lang="ja").emit({
            "event": "resolved", "ts": 0.0, "reason": why, "raised": "00:00:01", "lasted": 3.0,
            "finding": {"code": "ESP_ONE_WAY", "severity": "error", "title": "t",
                        "tunnel": "192.0.2.1<->192.0.2.2"}})
        line = out.getvalue()
        assert "ESP_ONE_WAY" in line and why not in line
        assert complete.english_runs(line) == [], line


# -- Python's words inside a reason: an unexpected exception's message, zlib's ---------------

def test_exception_text_is_a_quoted_value(marked, monkeypatch, tmp_path):
    """A reason that carries Python's own text (a decoder bug's exception, zlib's message on a
    corrupt gzip stream) reads in Japanese around it, and that text is shown as it is, quoted
    (a value: not translated, not English prose of the report); English is unchanged."""
    import gzip

    import test_i18n_complete as complete
    from conftest import CAPTURES
    from pcapvpn import decode
    from pcapvpn.analysis import run
    from pcapvpn.report import render

    v, w = i18n.MARK
    src = next((CAPTURES / "lab" / "ikev2_healthy").glob("*.pcap"))

    def bug(*_a, **_k):
        raise ValueError("invalid literal for int() with base 10")

    with monkeypatch.context() as m:
        m.setattr(decode.Decoder, "_udp_other", bug)
        buggy = run([str(src)])
    said = "internal decoder error (ValueError: invalid literal for int() with base 10)"
    assert said in buggy.report.capture.decode_errors_by_reason
    assert said in render(buggy.report, "text", lang="en")
    L = i18n.Lang("ja")
    assert L.reason(said) == \
        f"デコーダ内部のエラー (ValueError: '{v}invalid literal for int() with base 10{w}')"

    data = bytearray(gzip.compress(src.read_bytes()))
    data[len(data) // 2:len(data) // 2 + 40] = b"\xff" * 40  # zlib: "invalid ..." / "incorrect"
    (tmp_path / "corrupt.pcap.gz").write_bytes(bytes(data))
    (tmp_path / "cut.pcap.gz").write_bytes(bytes(data[:len(data) // 3]))
    problems = complete._untranslated(buggy, "decoder bug")
    for name in ("corrupt.pcap.gz", "cut.pcap.gz"):
        result = run([str(tmp_path / name)])
        reasons = [d.reason for d in result.report.capture.damage]
        assert any(r.startswith("gzip: gzip data") for r in reasons), reasons
        shown = render(result.report, "text", lang="ja")
        assert "gzip data" not in shown, shown
        problems += complete._untranslated(result, name)
    assert problems == []
    corrupt = run([str(tmp_path / "corrupt.pcap.gz")]).report.capture.damage[-1].reason
    assert f"('{v}" in L.reason(corrupt) and "gzip データ" in L.reason(corrupt)
