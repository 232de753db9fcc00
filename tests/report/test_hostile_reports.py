"""Issue 20: capture text and file names never act on the reader's terminal, ticket or page, and
no key material reaches any output.

The capture of tests/report/hostile_text.py (built with scapy) carries hostile text in every string that
reaches a report: IKE identities and vendor IDs, TLS SNI and certificate subject/issuer, L2TP
host names and a StopCCN message, PPTP host names and vendor strings.  Every format is rendered
in both languages and checked: no raw control character (the text report's own colours apart),
valid UTF-8, Markdown with the structure of the same capture carrying benign text, HTML that a
strict HTML5 parser accepts, JSON that keeps the text as it was."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys

import html5lib
import pytest

import hostile_text as hostile
from conftest import CAPTURES, REPO
from pcapvpn.analysis import Options, run
from pcapvpn.decrypt.keyfile import load_keys
from pcapvpn.report import render
from pcapvpn.report.escape import printable
from pcapvpn.report.markdown import _md

LANGS = ("en", "ja")
XHTML = "{http://www.w3.org/1999/xhtml}"


def _options():
    return Options(vpn_servers=[(ipaddress.ip_address(hostile.VPN_SERVER).packed, None)])


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    out = {}
    for name, text in (("hostile", hostile.HOSTILE), ("benign", hostile.BENIGN)):
        path = hostile.write_hostile(d / f"{name}.pcap", text)
        out[name] = run([str(path)], _options()).report
    return out


def _strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def test_the_report_carries_the_hostile_text(reports):
    """The model holds the text as the capture had it (else the checks below mean nothing), in
    every field that reaches a report, and JSON keeps it as it was."""
    h, b = reports["hostile"], reports["benign"]
    assert sorted(f.code for f in h.findings) == sorted(f.code for f in b.findings)
    assert {"L2TP_ERROR", "PPTP_ERROR", "TLS_CERT_INVALID", "IKE_NO_RESPONSE"} <= \
        {f.code for f in h.findings}
    doc = json.loads(render(h, "json"))
    strings = list(_strings(doc))
    # the L2TP StopCCN message and the IKE identity: the whole text, controls included
    assert any(f"message '{hostile.HOSTILE}'" in s for s in strings)
    assert any(s == f"ID FQDN {hostile.HOSTILE}" for s in strings)
    # SNI (ASCII), certificate names
    assert any(s == "sni-" + hostile.HOSTILE_ASCII for s in strings)
    assert any("\x1b[2J\x1b]0\\;pwned\x07" in s and s.startswith("O=") for s in strings)
    details = " ".join(f.detail for f in h.findings)
    assert "\x1b[2J" in details and "\x9b" in details and "\n# heading" in details


@pytest.mark.parametrize("fmt,lang", [(f, lang) for f in ("text", "markdown", "html")
                                      for lang in LANGS] + [("json", "en")])
def test_no_raw_control_characters(reports, fmt, lang):
    out = render(reports["hostile"], fmt, lang=lang)
    assert hostile.raw_controls(out) == []
    assert hostile.utf8_ok(out)
    if fmt != "json":
        # the escaped text is there to read: the L2TP message as a whole
        shown = printable(hostile.HOSTILE)
        if fmt == "text":
            assert "\\x1b[2J\\x1b]0;pwned\\x07" in out and "\\x9b1m\\u202eevil" in out
        elif fmt == "html":
            page = "".join(_parse(out).itertext())
            assert shown in page
        else:  # Markdown shows the escape's backslash too
            assert _md(hostile.HOSTILE) in out


def test_text_colours_are_the_tools_own(reports):
    out = render(reports["hostile"], "text", color=True)
    assert hostile.SGR.search(out)  # colours on
    assert hostile.raw_controls(out, colours=True) == []


@pytest.mark.parametrize("lang", LANGS)
def test_markdown_structure_is_that_of_benign_text(reports, lang):
    """The same capture with benign strings gives the same Markdown document structure: the
    hostile text opened no heading, code block, table row or cell, list, quote, link, emphasis,
    HTML or line break."""
    h = render(reports["hostile"], "markdown", lang=lang)
    b = render(reports["benign"], "markdown", lang=lang)
    assert hostile.md_shape(h) == hostile.md_shape(b)
    assert "\n# heading" not in h and "<script" not in h


def _parse(text):
    return html5lib.HTMLParser(strict=True, namespaceHTMLElements=True).parse(text)


@pytest.mark.parametrize("lang", LANGS)
def test_html_parses_strictly(reports, lang):
    out = render(reports["hostile"], "html", lang=lang)
    tree = _parse(out)  # raises on any parse error (control characters, noncharacters ...)
    assert not list(tree.iter(XHTML + "script"))
    assert not [el for el in tree.iter() if el.tag.endswith("}a") and
                not (el.get("href") or "").startswith("#")]


# -- file names ------------------------------------------------------------------------------------

#: a file name with terminal escapes, a C1 control and a byte that is not UTF-8
EVIL_NAME = b"evil\x1b]0;title\x07\x1b[2J\xc2\x9b\xff.pcap"


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "pcapvpn", *args], capture_output=True,
                          cwd=REPO, timeout=300, **kw)


@pytest.mark.skipif(os.name != "posix", reason="file names as bytes are POSIX")
@pytest.mark.parametrize("fmt", ["text", "markdown", "html", "json"])
def test_file_name_with_controls_and_invalid_utf8(tmp_path, fmt):
    src = CAPTURES / "lab" / "ikev2_no_response"
    cap = next(src.glob("*.pcap"))
    path = os.path.join(os.fsencode(tmp_path), EVIL_NAME)
    with open(path, "wb") as f:
        f.write(cap.read_bytes())
    r = _cli(b"analyze", path, b"--format", fmt.encode())
    assert r.returncode in (0, 1), r.stderr
    out = r.stdout.decode("utf-8")  # strict: the output is valid UTF-8
    assert hostile.raw_controls(out) == []
    # the name as shown everywhere: controls escaped, the byte that is not UTF-8 as \xff
    name = os.fsencode(tmp_path).decode() + "/" + EVIL_NAME.decode("utf-8", "backslashreplace")
    if fmt == "json":
        doc = json.loads(out)
        assert doc["capture"]["files"][0]["name"] == name
        assert all(fr["file"] == name for f in doc["findings"] for fr in f["evidence"]["frames"])
    elif fmt == "html":
        assert printable(name) in "".join(_parse(out).itertext())
    elif fmt == "text":
        assert printable(name) in out
    else:
        assert _md(name) in out
    # errors name the file the same way
    missing = os.path.join(os.fsencode(tmp_path), b"no\x1b[2Jsuch\xff.pcap")
    r = _cli(b"analyze", missing)
    assert r.returncode == 2
    err = r.stderr.decode("utf-8")
    assert hostile.raw_controls(err) == [] and "no\\x1b[2Jsuch\\xff.pcap" in err


@pytest.mark.skipif(os.name != "posix", reason="file names as bytes are POSIX")
def test_file_name_in_evidence_and_redaction_map(tmp_path):
    """The exported evidence (interface names, frame comments) and the redaction map hold the
    name as the reports show it (pcapng strings are UTF-8; the map is JSON)."""
    cap = next((CAPTURES / "lab" / "ikev2_no_response").glob("*.pcap"))
    path = os.path.join(os.fsencode(tmp_path), EVIL_NAME)
    with open(path, "wb") as f:
        f.write(cap.read_bytes())
    ev, rmap = tmp_path / "ev.pcapng", tmp_path / "map.json"
    r = _cli(b"analyze", path, b"--export-evidence", str(ev).encode())
    assert r.returncode in (0, 1), r.stderr
    from dissect.vpn.capture import open_capture

    with open(ev, "rb") as f:
        reader = open_capture(f)
        assert len(list(reader.records())) > 0
    names = re.findall(rb"\[original: (.*?) frame \d+\]", ev.read_bytes())
    assert names and all(n.decode("utf-8").endswith("evil\\x1b]0;title\\x07\\x1b[2J\\x9b\\xff.pcap")
                         for n in names)
    r = _cli(b"analyze", path, b"--redact", b"--redact-map", str(rmap).encode(), b"--format",
             b"json")
    assert r.returncode in (0, 1), r.stderr
    assert EVIL_NAME not in r.stdout and b"evil" not in r.stdout
    mapping = json.loads(rmap.read_text(encoding="utf-8"))  # strict UTF-8
    keys = []
    _strings_and_keys(mapping, keys)
    assert any(k.endswith(EVIL_NAME.decode("utf-8", "backslashreplace")) for k in keys)


def _strings_and_keys(obj, out):
    if isinstance(obj, str):
        out.append(obj)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.append(k)
            _strings_and_keys(v, out)
    elif isinstance(obj, list):
        for v in obj:
            _strings_and_keys(v, out)


# -- keys never printed ----------------------------------------------------------------------------

KEY = "5ec7e75ec7e75ec7e75ec7e75ec7e75e"           # 16 bytes, the secret every case hides
KEY2 = "a11ce5a11ce5a11ce5a11ce5a11ce5a11ce5a11c"    # 20 bytes
LAB_KEYS = CAPTURES / "lab" / "ikev2_healthy" / "keys"
LAB_CAP = CAPTURES / "lab" / "ikev2_healthy" / "ikev2_healthy.pcap"
SPI_I, SPI_R = "0x0001020304050607", "0xc02e7a3031a03188"


def _secrets():
    """Every form the secrets could be printed in."""
    out = set()
    for k in (KEY, KEY2):
        out |= {k, k.upper(), bytes.fromhex(k).decode("latin-1"), ":".join(
            k[i:i + 2] for i in range(0, len(k), 2)), k[:16], k[-16:]}
    out.add("s3cr3t-passphrase")
    return out


def _assert_no_secret(*texts):
    for t in texts:
        for s in _secrets():
            assert s not in t, (s, t[:300])


def _v2(encr='"AES-CBC-128 [RFC3602]"', integ='"HMAC_SHA2_256_128 [RFC4868]"', sk_ei=KEY,
        sk_ai=KEY2 + "0" * 24):
    return (f"0123456789abcdef,fedcba9876543210,{sk_ei},{sk_ei},{encr},{sk_ai},{sk_ai},"
            f"{integ}")


def _esp(encr='"AES-CBC [RFC3602]"', ekey=f'"0x{KEY}"', auth='"HMAC-SHA-1-96 [RFC2404]"',
         akey=f'"0x{KEY2}"', spi='"0x00000009"'):
    return f'"IPv4","192.0.2.1","192.0.2.2",{spi},{encr},{ekey},{auth},{akey}'


#: (name, key file text, what the one-line error says): every error path of pcapvpn.decrypt.keyfile
KEY_ERRORS = [
    ("tcpdump ikev2 key as algorithm",
     f"ikev2 I {SPI_I} {SPI_R} 0x{KEY2} aes128:0x{KEY}\n", "field 5 is not integrity:key"),
    ("tcpdump ikev2 unknown encryption",
     f"ikev2 I {SPI_I} {SPI_R} sha1:0x{KEY2} {KEY}:0x{KEY}\n", "field 6 is not encryption:key"),
    ("tcpdump ikev2 ASCII secret unknown algorithm",
     f"ikev2 I {SPI_I} {SPI_R} s3cr3t-passphrase:x aes128:0x{KEY}\n", "field 5"),
    ("tcpdump ikev2 key length",
     f"ikev2 I {SPI_I} {SPI_R} sha1:0x{KEY2} aes256:0x{KEY}\n", "encryption key is 16 bytes"),
    ("tcpdump ikev2 not hex", f"ikev2 I {SPI_I} {SPI_R} sha1:0x{KEY2}zz aes128:0x{KEY}\n",
     "integrity key is not hexadecimal"),
    ("tcpdump ikev2 shape", f"ikev2 I {SPI_I} {SPI_R} sha1:0x{KEY2}\n",
     "expected 'ikev2 I|R"),
    ("tcpdump ikev2 without R", f"ikev2 I {SPI_I} {SPI_R} sha1:0x{KEY2} aes128:0x{KEY}\n",
     "without its 'R' line"),
    ("tcpdump ikev2 I/R differ",
     f"ikev2 I {SPI_I} {SPI_R} sha1:0x{KEY2} aes128:0x{KEY}\n"
     f"ikev2 R {SPI_I} {SPI_R} md5:0x{KEY2} aes128:0x{KEY}\n", "name different algorithms"),
    ("tcpdump -E secret length", f"0x1@192.0.2.1 aes128-cbc:0x{KEY2}\n", "secret is 20 bytes"),
    ("tcpdump -E ASCII secret length", "aes128-cbc:s3cr3t-passphrase\n", "secret is 17 bytes"),
    ("tcpdump -E address", f"0x1@{KEY} aes128-cbc:0x{KEY}\n", "not an IP address"),
    ("ikev2 wrong key length with a key in the name's tag",
     _v2(encr=f'"AES-CBC-256 [{KEY}]"'), "(SK_ei) is 16 bytes; aescbc256 needs 32"),
    ("ikev2 AEAD with integrity, key in the tag",
     _v2(encr='"AES-GCM-128 with 16 octet ICV [RFC4106]"', sk_ei=KEY + "00000000",
         integ=f'"HMAC_SHA2_256_128 [{KEY2}]"'), "integrity algorithm must be NONE, not "
                                                 "hmacsha2256128"),
    ("ikev2 not hex", _v2(sk_ei=KEY + "zz"), "field 3 (SK_ei) is not hexadecimal"),
    ("ikev2 integrity key empty", _v2(sk_ai=""), "is empty but"),
    ("ikev1 key length", f"0123456789abcdef,{KEY}00\n", "field 2 (encryption key) is 17"),
    ("esp key length, key in the name",
     _esp(encr=f'"AES-CBC [{KEY2}]"', ekey=f'"0x{KEY}00"'), "is 17 bytes; aescbc needs"),
    ("esp AEAD with authentication", _esp(encr='"AES-GCM with 16 octet ICV [RFC4106]"',
                                          ekey=f'"0x{KEY}00000000"'), "AEAD cipher"),
    ("esp SPI", _esp(spi=f'"0x{KEY}"'), "field 4 (SPI) is outside"),
    ("esp authentication key empty", _esp(akey='""'), "field 8 (authentication key) is empty"),
    ("not a key line", f"{KEY},{KEY},{KEY}\n", "not a line of"),
    ("not UTF-8", f"{_v2()}\n".replace(KEY, "\xff" + KEY[2:], 1), "not UTF-8 text"),
    ("line too long", f"# {KEY}" + "x" * 70000 + "\n", "longer than 65536 bytes"),
]


@pytest.mark.parametrize("text,says", [k[1:] for k in KEY_ERRORS], ids=[k[0] for k in KEY_ERRORS])
def test_key_file_errors_never_show_a_key(tmp_path, text, says):
    p = tmp_path / "keys.txt"
    p.write_bytes(text.encode("latin-1"))  # "\xff": a byte that is not UTF-8
    r = _cli("analyze", str(LAB_CAP), "--keys", str(p), "--format", "json")
    out, err = r.stdout.decode(), r.stderr.decode("utf-8")
    assert r.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pcapvpn: error: key file {p}:"), err
    assert says in err, err
    _assert_no_secret(out, err)


def _with_key_in(tmp_path, name: str, line_no: int, old: str, new: str):
    """The lab's key directory with ``old`` replaced by ``new`` on line ``line_no`` of file
    ``name``."""
    d = tmp_path / "keys"
    d.mkdir()
    for f in LAB_KEYS.iterdir():
        text = f.read_text()
        if f.name == name:
            lines = text.splitlines(keepends=True)
            assert old in lines[line_no - 1]
            lines[line_no - 1] = lines[line_no - 1].replace(old, new, 1)
            text = "".join(lines)
        (d / f.name).write_text(text)
    return d


#: a key where an algorithm name belongs: the SA is reported as not decrypted, with the place
KEY_AS_NAME = [
    ("esp_sa", '"AES-CBC [RFC3602]"', f'"{KEY}"', "field 5 of"),
    ("esp_sa", '"HMAC-SHA-256-128 [RFC4868]"', f'"0x{KEY2}"', "field 7 of"),
    ("ikev2_decryption_table", '"AES-CBC-128 [RFC3602]"', f'"0x{KEY}"', "field 5 of"),
    ("ikev2_decryption_table", '"HMAC_SHA2_256_128 [RFC4868]"', f'"{KEY2}"', "field 8 of"),
    # recognised but written with more than its name: the table's name is shown
    ("esp_sa", '"AES-CBC [RFC3602]"', f'"AES-CBC [{KEY}]"', None),
]


@pytest.mark.parametrize("name,old,new,says", KEY_AS_NAME)
def test_a_key_in_an_algorithm_column_is_never_shown(tmp_path, name, old, new, says):
    keys = _with_key_in(tmp_path, name, 1, old, new)
    res = run([str(LAB_CAP)], Options(keys=load_keys([keys])))
    outs = [render(res.report, fmt, lang=lang) for fmt in ("text", "markdown", "html")
            for lang in LANGS] + [render(res.report, "json")]
    _assert_no_secret(*outs)
    if says:
        assert any(f"{says} {keys / name}:1" in o and "algorithm not supported (" in o
                   for o in outs)
    else:  # recognised: the SA is decrypted as with the lab's own table
        assert not any("algorithm not supported" in o for o in outs)
    r = _cli("analyze", str(LAB_CAP), "--keys", str(keys), "--format", "markdown")
    assert r.returncode in (0, 1)
    _assert_no_secret(r.stdout.decode(), r.stderr.decode())


def test_tcpdump_unknown_esp_algorithm_is_named_by_place(tmp_path):
    p = tmp_path / "secrets"
    p.write_text(f"0xa28295a6@198.51.100.2 {KEY}:0x{KEY2}\n")
    ks = load_keys([p])
    (k,) = ks.esp_for(0xA28295A6)
    assert not k.supported and k.encr_name == f"field 2 of {p}:1"
    _assert_no_secret(repr(ks), repr(k), k.encr_name)
    res = run([str(LAB_CAP)], Options(keys=ks))
    _assert_no_secret(render(res.report, "json"), render(res.report, "html"))


def test_bom_crlf_and_large_tables(tmp_path):
    """A table saved by a Windows editor (byte-order mark, CRLF) gives the same keys; a table
    larger than 16 MiB is read to its end (a bad line at the end is an error, not ignored)."""
    plain = tmp_path / "plain"
    plain.mkdir()
    win = tmp_path / "win"
    win.mkdir()
    for f in LAB_KEYS.iterdir():
        (plain / f.name).write_bytes(f.read_bytes())
        (win / f.name).write_bytes(b"\xef\xbb\xbf" + f.read_bytes().replace(b"\n", b"\r\n"))
    a, b = load_keys([plain]), load_keys([win])
    assert repr(a) == repr(b) and a.esp.keys() == b.esp.keys() and a.ikev2.keys() == b.ikev2.keys()
    assert ([k.ekey for v in a.esp.values() for k in v]
            == [k.ekey for v in b.esp.values() for k in v])
    ra = run([str(LAB_CAP)], Options(keys=a)).report
    rb = run([str(LAB_CAP)], Options(keys=b)).report
    assert [f.code for f in ra.findings] == [f.code for f in rb.findings]
    # 17 MiB of comments, then a bad line: refused with its line number
    big = tmp_path / "big"
    line = "# " + "x" * 1000 + "\n"
    n = (17 << 20) // len(line) + 1
    big.write_text(line * n + (LAB_KEYS / "ikev1_decryption_table").read_text() + "zz,zz\n")
    r = _cli("analyze", str(LAB_CAP), "--keys", str(big))
    assert r.returncode == 2 and f"{big}:{n + 1}: " in r.stderr.decode(), r.stderr
    # UTF-16 (Notepad's "Unicode") is named
    u16 = tmp_path / "u16"
    u16.write_bytes("\ufeff".encode("utf-16-le") + _v2().encode("utf-16-le"))
    r = _cli("analyze", str(LAB_CAP), "--keys", str(u16))
    assert r.returncode == 2 and b"UTF-16" in r.stderr
    _assert_no_secret(r.stderr.decode())
