"""Key tables: recognised by content, clear errors with file and line, never echoing keys."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import CAPTURES, REPO
from pcapvpn.decrypt.keyfile import KeyFileError, load_keys, normalise_name

SK_EI = "00112233445566778899aabbccddeeff"
SK_ER = "ffeeddccbbaa99887766554433221100"
SK_AI = "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20"
SK_AR = "2122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f40"
V2_LINE = (f'0123456789abcdef,fedcba9876543210,{SK_EI},{SK_ER},"AES-CBC-128 [RFC3602]",'
           f'{SK_AI},{SK_AR},"HMAC_SHA2_256_128 [RFC4868]"')
V1_LINE = "0123456789abcdef,0011223344556677aabbccddeeff0011"
ESP_LINE = ('"IPv4","192.0.2.2","198.51.100.2","0xa28295a6","AES-CBC [RFC3602]",'
            f'"0x{SK_EI}","HMAC-SHA-256-128 [RFC4868]","0x{SK_AI}"')


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_three_wireshark_tables_by_content(tmp_path):
    # names that say nothing: recognised by content
    write(tmp_path, "a.txt", "# comment\n\n" + V2_LINE + "\n")
    write(tmp_path, "b.txt", V1_LINE + "\n")
    write(tmp_path, "c.txt", ESP_LINE + "\n")
    write(tmp_path, "SOURCE", "save-keys plugin; written by the lab\n")
    ks = load_keys([tmp_path])
    (k2,) = ks.ikev2_for(bytes.fromhex("0123456789abcdef"), bytes.fromhex("fedcba9876543210"))
    assert (k2.encr, k2.icv_len, k2.integ, k2.integ_len) == ("aes-cbc", 0, "hmac-sha256", 16)
    assert k2.sk_ei.hex() == SK_EI and k2.sk_ar.hex() == SK_AR
    assert k2.origin.endswith("a.txt:3")
    (k1,) = ks.ikev1_for(bytes.fromhex("0123456789abcdef"))
    assert len(k1.key) == 16
    (ke,) = ks.esp_for(0xA28295A6)
    assert (ke.encr, ke.auth, ke.icv_len, ke.checks_integrity) == \
        ("aes-cbc", "hmac-sha256", 16, True)
    assert ks.esp_spis == {0xA28295A6}
    assert [p.rsplit("/", 1)[-1] for p in ks.skipped] == ["SOURCE"]


def test_repr_never_shows_keys():
    ks = load_keys([REPO / "captures/lab/ikev2_healthy/keys"])
    text = repr(ks) + repr(list(ks.ikev2.values())) + repr(list(ks.esp.values()))
    for lst in ks.ikev2.values():
        for k in lst:
            assert k.sk_ei.hex() not in text and k.sk_ai.hex() not in text
    for lst in ks.esp.values():
        for k in lst:
            assert k.ekey.hex() not in text


def test_save_keys_names_and_lab_directory():
    """The lab's keys/ directory: SOURCE skipped, esp_sa.orig (strongSwan's 'TripleDes-CBC')
    and the rewritten esp_sa are the same keys (deduplicated)."""
    d = CAPTURES / "lab/ikev1_aggressive_healthy/keys"
    ks = load_keys([d])
    assert sum(len(v) for v in ks.esp.values()) == 2
    assert all(k.encr == "3des-cbc" for v in ks.esp.values() for k in v)
    assert len(ks.ikev1) == 1


def test_strongswan_aead_esp_names(tmp_path):
    # save-keys writes "AES-GCM [RFC4106]" + "ANY n bit authentication": n gives the ICV
    base = '"IPv4","10.0.0.1","10.0.0.2","0x{spi}","AES-GCM [RFC4106]","0x{k}","{a}",""\n'
    key = "11" * 20
    write(tmp_path, "esp_sa",
          base.format(spi="00000001", k=key, a="ANY 128 bit authentication [no checking]")
          + base.format(spi="00000002", k=key, a="ANY 64 bit authentication [no checking]")
          + f'"IPv4","*","*","0x00000003","AES-CCM with 12 octet ICV [RFC4309]","0x{"22" * 19}",'
            '"NULL",""\n'
          + f'"IPv4","*","*","0x00000004","CHACHA20-POLY1305 [RFC7634]","0x{"33" * 36}",'
            '"NULL",""\n'
          + f'"IPv4","*","*","0x00000005","AES-GCM with 8 octet ICV [RFC4106]","0x{"44" * 36}",'
            '"NULL",""\n')
    ks = load_keys([tmp_path])
    assert ks.esp_for(1)[0].icv_len == 16
    assert ks.esp_for(2)[0].icv_len is None  # 64 is written for ICV8 and ICV12: both tried
    assert (ks.esp_for(3)[0].encr, ks.esp_for(3)[0].icv_len) == ("aes-ccm", 12)
    assert (ks.esp_for(4)[0].encr, ks.esp_for(4)[0].icv_len) == ("chacha20-poly1305", 16)
    assert ks.esp_for(5)[0].icv_len == 8
    assert ks.esp_for(3)[0].src is None  # "*" = any address


def test_ikev2_chacha_and_ccm_names(tmp_path):
    line = ('0000000000000001,0000000000000002,{k},{k},"{n}",,,"NONE [RFC4306]"\n')
    write(tmp_path, "t", line.format(k="55" * 36, n="CHACHA20-POLY1305 [RFC7634]")
          .replace("0000000000000001", "0000000000000011")
          + line.format(k="66" * 19, n="AES-CCM-128 with 16 octet ICV [RFC5282]"))
    ks = load_keys([tmp_path / "t"])
    (c,) = ks.ikev2_for(bytes.fromhex("0000000000000011"), bytes.fromhex("0000000000000002"))
    assert (c.encr, c.icv_len) == ("chacha20-poly1305", 16)
    (m,) = ks.ikev2_for(bytes.fromhex("0000000000000001"), bytes.fromhex("0000000000000002"))
    assert (m.encr, m.icv_len) == ("aes-ccm", 16)


def test_tcpdump_syntax(tmp_path):
    write(tmp_path, "secrets",
          "# tcpdump -E\n0x12345678@192.1.2.45 3des-cbc-hmac96:0x" + "40" * 24 + "\n"
          "aes256-cbc:0x" + "41" * 32 + "\n"
          "ikev2 I 0x0001020304050607 0xc02e7a3031a03188 sha1:0x" + "aa" * 20 + " aes128:0x"
          + "bb" * 16 + "\n"
          "ikev2 R 0x0001020304050607 0xc02e7a3031a03188 sha1:0x" + "cc" * 20 + " aes128:0x"
          + "dd" * 16 + "\n")
    ks = load_keys([tmp_path / "secrets"])
    (e,) = ks.esp_for(0x12345678)[:1]
    assert (e.encr, e.icv_len, e.auth, e.dst) == ("3des-cbc", 12, "any", "192.1.2.45")
    assert ks.esp_all and ks.esp_any[0].encr == "aes-cbc"  # no SPI: every SA
    (k,) = ks.ikev2_for(bytes.fromhex("0001020304050607"), bytes.fromhex("c02e7a3031a03188"))
    assert k.sk_ei == b"\xbb" * 16 and k.sk_er == b"\xdd" * 16 and k.sk_ar == b"\xcc" * 20
    assert (k.integ, k.integ_len) == ("hmac-sha1", 12)


BAD = [
    (f'0123456789abcdef,fedcba9876543210,{SK_EI}zz,{SK_ER},"AES-CBC-128 [RFC3602]",'
     f'{SK_AI},{SK_AR},"HMAC_SHA2_256_128 [RFC4868]"', "field 3 (SK_ei) is not hexadecimal"),
    (f'0123456789abcdef,fedcba9876543210,{SK_EI}0,{SK_ER},"AES-CBC-128 [RFC3602]",'
     f'{SK_AI},{SK_AR},"HMAC_SHA2_256_128 [RFC4868]"', "odd number of hex digits"),
    (f'0123456789abcdef,fedcba9876543210,{SK_EI}00,{SK_ER},"AES-CBC-128 [RFC3602]",'
     f'{SK_AI},{SK_AR},"HMAC_SHA2_256_128 [RFC4868]"', "SK_ei) is 17 bytes"),
    (f'0123456789abcdef,fedcba9876543210,{SK_EI},{SK_ER},"AES-CBC-128 [RFC3602]",'
     f',{SK_AR},"HMAC_SHA2_256_128 [RFC4868]"', "SK_ai) is empty"),
    ("0123456789abcdef,0011223344", "field 2 (encryption key) is 5 bytes"),
    (ESP_LINE.replace("0xa28295a6", "0xzz"), "field 4 (SPI) is not a number"),
    (ESP_LINE.replace(f'"0x{SK_EI}"', f'"0x{SK_EI}11"'), "field 6 (encryption key) is 17 bytes"),
    ('"IPv4","a","b","0x1","AES-GCM with 16 octet ICV [RFC4106]","0x' + "00" * 20
     + '","HMAC-SHA-1-96 [RFC2404]","0x' + "00" * 20 + '"', "AEAD cipher"),
    ("a,b,c", "not a line of ikev1_decryption_table"),
    ("ikev2 I 0x0001020304050607 0xc02e7a3031a03188 sha1:0x" + "aa" * 20 + " aes128:0x" + "bb" * 16,
     "without its 'R' line"),
]


@pytest.mark.parametrize("line,reason", BAD, ids=[b[1][:30] for b in BAD])
def test_malformed_lines_name_file_and_line(tmp_path, line, reason):
    p = write(tmp_path, "keys.txt", "# header\n" + V1_LINE + "\n" + line + "\n")
    with pytest.raises(KeyFileError) as ei:
        load_keys([p])
    e = ei.value
    assert e.path == str(p) and e.line == 3, str(e)
    assert reason in str(e)
    assert str(e).startswith(f"{p}:3: ")
    # never any key material (nor any hex field longer than an SPI) in the message
    for secret in (SK_EI, SK_ER, SK_AI, SK_AR, "0011223344", "00" * 20):
        assert secret not in str(e)


def test_unsupported_algorithm_is_not_an_error(tmp_path):
    p = write(tmp_path, "esp_sa", '"IPv4","*","*","0x00000009","TWOFISH-CBC","0x' + "11" * 16
              + '","HMAC-SHA-1-96 [RFC2404]","0x' + "22" * 20 + '"\n')
    (k,) = load_keys([p]).esp_for(9)
    assert not k.supported and k.encr == "unsupported"


def test_missing_path_and_explicit_unrecognised_file(tmp_path):
    with pytest.raises(KeyFileError, match="no such file"):
        load_keys([tmp_path / "nope"])
    p = write(tmp_path, "README", "hello\n")
    with pytest.raises(KeyFileError, match=r"README:1: not a line"):
        load_keys([p])


def test_normalise_name():
    assert normalise_name("AES-CBC-128 [RFC3602]") == "aescbc128"
    assert normalise_name("TripleDes-CBC [RFC2451]") == normalise_name("TripleDES-CBC")


def test_cli_bad_key_file_exits_2_without_echoing(tmp_path):
    p = write(tmp_path, "ikev2_decryption_table", BAD[0][0] + "\n")
    cap = CAPTURES / "lab/ikev2_healthy/ikev2_healthy.pcap"
    r = subprocess.run([sys.executable, "-m", "pcapvpn", "analyze", str(cap), "--keys", str(p)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert f"{p}:1: field 3 (SK_ei) is not hexadecimal" in r.stderr
    assert SK_EI not in r.stderr + r.stdout and SK_AI not in r.stderr + r.stdout


def test_algorithm_names_shown_only_when_recognised(tmp_path):
    """Names as written when they hold nothing but the name (and an RFC / "no checking" tag);
    the table's name when anything else is in them; the place when unrecognised."""
    p = write(tmp_path, "esp_sa", "\n".join([
        '"IPv4","*","*","0x00000001","AES-CBC [RFC3602]","0x' + "11" * 16
        + '","ANY 96 bit authentication [no checking]","0x' + "22" * 20 + '"',
        '"IPv4","*","*","0x00000002","AES-CBC [00112233445566778899]","0x' + "11" * 16
        + '","HMAC-SHA-1-96 [RFC2404]","0x' + "22" * 20 + '"',
        '"IPv4","*","*","0x00000003","AES\x1b\x07-CBC","0x' + "11" * 16
        + '","NULL",""',
        '"IPv4","*","*","0x00000004","00112233445566778899","0x' + "11" * 16
        + '","NULL",""']) + "\n")
    ks = load_keys([p])
    names = {s: (k.encr_name, k.auth_name) for s, (k,) in ks.esp.items()}
    assert names[1] == ("AES-CBC [RFC3602]", "ANY 96 bit authentication [no checking]")
    assert names[2] == ("aescbc", "HMAC-SHA-1-96 [RFC2404]")
    assert names[3] == ("aescbc", "NULL")
    assert names[4] == (f"field 5 of {p}:4", "NULL") and not ks.esp[4][0].supported
