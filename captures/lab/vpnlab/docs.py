"""Per-scenario expected.json and README.md, written after a run from the scenario
definition plus what tshark sees in the fresh capture."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path

from . import facts
from .lab import Scenario
from .proc import run

IKEV2_EXCH = {"34": "IKE_SA_INIT", "35": "IKE_AUTH", "36": "CREATE_CHILD_SA",
              "37": "INFORMATIONAL", "43": "IKE_INTERMEDIATE"}
IKEV1_EXCH = {"2": "Main Mode", "4": "Aggressive", "5": "Informational", "32": "Quick Mode",
              "6": "Mode-CFG"}
NOTIFY = {"14": "NO_PROPOSAL_CHOSEN", "17": "INVALID_KE_PAYLOAD", "24": "AUTHENTICATION_FAILED",
          "38": "TS_UNACCEPTABLE", "16388": "NAT_DETECTION_SOURCE_IP",
          "16389": "NAT_DETECTION_DESTINATION_IP", "16390": "COOKIE", "16384": "INITIAL_CONTACT",
          "16393": "REKEY_SA", "16430": "IKEV2_FRAGMENTATION_SUPPORTED",
          "16431": "SIGNATURE_HASH_ALGORITHMS", "11": "INVALID_SPI", "4": "INVALID_IKE_SPI",
          "36136": "R-U-THERE", "36137": "R-U-THERE-ACK", "24578": "INITIAL-CONTACT",
          "16394": "ESP_TFC_PADDING_NOT_SUPPORTED", "16396": "MOBIKE_SUPPORTED",
          "16404": "MULTIPLE_AUTH_SUPPORTED", "16418": "CHILDLESS_IKEV2_SUPPORTED",
          "43": "TEMPORARY_FAILURE", "44": "CHILD_SA_NOT_FOUND", "16406": "REDIRECT_SUPPORTED",
          "7": "INVALID_SYNTAX", "9": "INVALID_MESSAGE_ID", "18": "INVALID_ID_INFORMATION",
          "16395": "NON_FIRST_FRAGMENTS_ALSO", "16401": "COOKIE2",
          "16417": "EAP_ONLY_AUTHENTICATION", "16420": "IKEV2_MESSAGE_ID_SYNC_SUPPORTED"}
# status notifies left out of the README's IKE message table (present in nearly every message)
QUIET_NOTIFY = {"NAT_DETECTION_SOURCE_IP", "NAT_DETECTION_DESTINATION_IP",
                "IKEV2_FRAGMENTATION_SUPPORTED", "SIGNATURE_HASH_ALGORITHMS",
                "REDIRECT_SUPPORTED", "CHILDLESS_IKEV2_SUPPORTED", "MULTIPLE_AUTH_SUPPORTED"}

OVPN_OPCODES = {"1": "P_CONTROL_HARD_RESET_CLIENT_V1", "2": "P_CONTROL_HARD_RESET_SERVER_V1",
                "3": "P_CONTROL_SOFT_RESET_V1", "4": "P_CONTROL_V1", "5": "P_ACK_V1",
                "6": "P_DATA_V1", "7": "P_CONTROL_HARD_RESET_CLIENT_V2",
                "8": "P_CONTROL_HARD_RESET_SERVER_V2", "9": "P_DATA_V2",
                "10": "P_CONTROL_HARD_RESET_CLIENT_V3", "11": "P_CONTROL_WKC_V1"}

VIEWS = {"m-r": "router interface towards the responder (m-r)",
         "m-l": "router interface towards the initiator (m-l)"}


#: WireGuard message types (wg.type; WireGuard paper §5.4)
WG_TYPES = {"1": "handshake initiation", "2": "handshake response", "3": "cookie reply",
            "4": "transport data"}


def _version(pkg: str) -> str:
    cp = run(["dpkg-query", "-W", "-f", "${Version}", pkg], check=False)
    return cp.stdout.strip() or "?"


def _libreswan_version() -> str:
    from .libreswan import BUILD
    vers = sorted(p.parent.name for p in BUILD.glob("*/root"))
    return vers[-1] if vers else "?"


def _daemons(g: dict) -> str:
    names = [f"strongSwan {g['strongswan']}" if "strongswan" in g else "",
             f"libreswan {g['libreswan']}" if "libreswan" in g else "",
             f"OpenVPN {g['openvpn']}" if "openvpn" in g else "",
             f"wireguard-go {g['wireguard-go']}" if "wireguard-go" in g else ""]
    return " and ".join(n for n in names if n) or "?"


def summarize(pcap: Path, decode_as: list[str] | None = None, keys: Path | None = None) -> dict:
    """Counts and an IKE message list (notifies decrypted when ``keys`` is given)."""
    if not pcap.exists():
        return {"frames": 0}
    out = facts.tshark(pcap, keys=keys, decode_as=decode_as, args=["-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,",
                              "-e", "frame.number", "-e", "frame.time_relative",
                              "-e", "ip.src", "-e", "ip.dst", "-e", "udp.srcport",
                              "-e", "udp.dstport", "-e", "_ws.col.Protocol",
                              "-e", "isakmp.version", "-e", "isakmp.exchangetype",
                              "-e", "isakmp.messageid", "-e", "isakmp.flags",
                              "-e", "isakmp.notify.msgtype", "-e", "esp.spi",
                              "-e", "udpencap.nat_keepalive", "-e", "icmp.type",
                              "-e", "ip.flags.mf", "-e", "ip.frag_offset", "-e", "frame.len",
                              "-e", "ip.proto"])
    rows = [line.split("\t") for line in out.splitlines() if line.strip()]
    ike = []
    esp: Counter = Counter()
    spis: dict[str, set] = {}
    keepalives = icmp = frags = 0
    protos: Counter = Counter()
    last = 0.0
    for r in rows:
        r += [""] * (19 - len(r))
        (num, t, src, dst, sp, dp, proto, ver, exch, mid, flags, notify, spi, ka, icmpt,
         mf, fo, _len, ipproto) = r[:19]
        last = float(t or 0)
        protos[proto] += 1
        src = src.split(",")[0]
        dst = dst.split(",")[0]
        if ipproto.split(",")[0] == "1":  # outer ICMP (not a decrypted inner ping)
            icmp += 1
            continue
        if mf.split(",")[0] in ("1", "True") or fo.split(",")[0] not in ("", "0"):
            frags += 1
        if exch:
            v2 = ver.startswith("0x2") or ver == "2.0" or exch in IKEV2_EXCH
            name = (IKEV2_EXCH if v2 else IKEV1_EXCH).get(exch, exch)
            resp = ""
            if v2 and flags:
                resp = "response" if int(flags, 16) & 0x20 else "request"
            nts = [NOTIFY.get(n, n) for n in notify.split(",") if n]
            ike.append({"frame": int(num), "time": round(float(t), 3), "src": f"{src}:{sp}",
                        "dst": f"{dst}:{dp}", "exchange": name, "msgid": mid, "dir": resp,
                        "notify": [n for n in nts if n not in QUIET_NOTIFY]})
        elif spi:
            esp[f"{src} -> {dst}"] += 1
            spis.setdefault(f"{src} -> {dst}", set()).add(spi)
        if ka:
            keepalives += 1
    ovpn: Counter = Counter()
    if protos.get("OpenVPN") or decode_as:
        out = facts.tshark(pcap, decode_as=decode_as, args=[
            "-Y", "openvpn", "-T", "fields", "-E", "occurrence=f", "-e", "ip.src",
            "-e", "openvpn.opcode"])
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) == 2 and parts[1]:
                ovpn[(parts[0], OVPN_OPCODES.get(str(int(parts[1], 0)), parts[1]))] += 1
    wg: Counter = Counter()
    if protos.get("WireGuard"):
        out = facts.tshark(pcap, args=["-Y", "wg", "-T", "fields", "-E", "occurrence=f",
                                       "-e", "ip.src", "-e", "wg.type"])
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) == 2 and parts[1]:
                wg[(parts[0], WG_TYPES.get(parts[1], parts[1]))] += 1
    return {"frames": len(rows), "duration": round(last, 1), "ike": ike,
            "openvpn": {f"{k[0]} {k[1]}": v for k, v in sorted(ovpn.items())},
            "wireguard": {f"{k[0]} {k[1]}": v for k, v in sorted(wg.items())},
            "esp": {k: {"packets": v, "spis": sorted(spis[k])} for k, v in esp.items()},
            "nat_keepalives": keepalives, "icmp": icmp, "ip_fragments": frags,
            "protocols": dict(protos)}


def _capture_entries(sc: Scenario, outdir: Path, keys_source: str | None) -> list[dict]:
    entries = [{"file": f"{sc.name}.pcap", "interface": sc.capture, "view": VIEWS[sc.capture],
                "keys": "keys" if keys_source and (outdir / "keys").exists() else None}]
    if sc.inside:
        other = "m-l" if sc.capture == "m-r" else "m-r"
        entries.append({"file": f"{sc.name}-inside.pcap", "interface": other,
                        "view": VIEWS[other] + (" (inside the NAT)" if sc.nat else ""),
                        "keys": "keys-inside" if (outdir / "keys-inside").exists() else None})
    n_router = len(entries)
    for extra in sc.views:
        # the keys are tried on the outer capture: the three views are client, gateway, keys
        entries.append({**extra, "keys": None})
    if sc.decode_as:
        for c in entries:
            c["decode_as"] = sc.decode_as
    for i, c in enumerate(entries):
        for key, table in (("verdicts", sc.verdicts),
                           ("verdicts_with_keys", sc.verdicts_with_keys)):
            if i >= n_router:
                v = table.get(c["interface"], table.get("all"))
            else:
                v = table.get(c["file"], (table.get("main") or table.get("all"))
                              if i == 0 else None)
            if v:
                c[key] = v
    return entries


def finish(sc: Scenario, outdir: Path, res: dict, keys_note: str, verify: bool = True,
           generated: dict | None = None) -> list[str]:
    """Write expected.json + README.md for a fresh run (or, with ``generated`` from an
    existing expected.json, rewrite them for the committed capture); return fact failures."""
    keys_source = res.get("keys_source")
    caps = _capture_entries(sc, outdir, keys_source)
    summaries = {c["file"]: summarize(outdir / c["file"], sc.decode_as,
                                      outdir / c["keys"] if c.get("keys") else None)
                 for c in caps}
    for c in caps:
        c["frames"] = summaries[c["file"]]["frames"]
    gen = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "seconds": res["seconds"],
           "keys_source": (f"{keys_source} ({keys_note})" if keys_source == "log-derived"
                           else keys_source)}
    if sc.protocol == "openvpn":
        gen["openvpn"] = _version("openvpn")
    elif sc.protocol == "wireguard":
        gen["wireguard-go"] = _version("wireguard-go")
    else:
        if "strongswan" in sc.implementations:
            gen["strongswan"] = _version("strongswan-charon")
        if "libreswan" in sc.implementations:
            gen["libreswan"] = _libreswan_version()
    if generated:
        gen = generated
    expected = {
        "scenario": sc.name,
        "title": sc.title,
        "protocol": sc.protocol,
        "origin": "lab: real daemons in network namespaces (captures/lab/run " + sc.name + ")",
        "configured": sc.configured,
        "fault": sc.fault,
        "captures": caps,
        "expected_findings": {"keyless": sc.keyless, "with_keys": sc.with_keys},
        "forbidden_findings": sc.forbidden,
        "facts": sc.facts,
        "generated": gen,
    }
    if sc.points:
        # several vantage points (issue 16): the files, in path order from the initiator, and
        # what analysing them together must find (losses and locations from the design)
        expected["vantage"] = {
            "points": [{"name": n, "file": f"{sc.name}-{n}.pcap", "interface": dev,
                        "namespace": ns} for n, dev, ns in sc.points],
            **sc.vantage}
    problems: list[str] = []
    if verify:
        problems = facts.check_all(expected, outdir)
    (outdir / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    (outdir / "README.md").write_text(readme(sc, expected, summaries, outdir))
    return problems


def _fmt_ike(msgs: list[dict], limit: int = 40) -> list[str]:
    lines = ["| frame | time (s) | from | to | exchange | msg id | dir | notifies |",
             "| ---: | ---: | --- | --- | --- | ---: | --- | --- |"]
    for m in msgs[:limit]:
        lines.append(f"| {m['frame']} | {m['time']} | {m['src']} | {m['dst']} | {m['exchange']} "
                     f"| {int(m['msgid'], 16) if m['msgid'].startswith('0x') else m['msgid']} "
                     f"| {m['dir']} | {', '.join(m['notify'])} |")
    if len(msgs) > limit:
        lines.append(f"| ... | | | | {len(msgs) - limit} more IKE messages | | | |")
    return lines


def readme(sc: Scenario, exp: dict, summaries: dict, outdir: Path) -> str:
    g = exp["generated"]
    lines = [f"# {sc.name}: {sc.title}", "",
             f"Generated by `captures/lab/run {sc.name}` (as root) on {g['date']} in "
             f"{g['seconds']} s; " + _daemons(g) + ".", "",
             "## Configured", "", sc.configured, "",
             f"Injected fault: {sc.fault}.", "",
             "Topology: initiator `left` " + ("10.99.0.2 behind a NAT router (masquerade with "
                                              "port remapping)" if sc.nat else "192.0.2.2")
             + " -- router -- responder `right` 198.51.100.2; protected networks 10.10.1.0/24 "
               "<-> 10.20.1.0/24. Router rules: see `router.nft`.", "",
             "## Captures", ""]
    for c in exp["captures"]:
        s = summaries[c["file"]]
        lines.append(f"- `{c['file']}`: {c['view']}, {s['frames']} frames over "
                     f"{s.get('duration', 0)} s; keys: "
                     + (f"`{c['keys']}/` ({g['keys_source']})" if c["keys"] else "none"))
    lines += ["", "## What the capture shows", "", sc.shows, ""]
    for c in exp["captures"]:
        s = summaries[c["file"]]
        if len(exp["captures"]) > 1:
            lines += [f"### `{c['file']}`", ""]
        if s.get("ike"):
            lines += _fmt_ike(s["ike"]) + [""]
            if c.get("keys"):
                lines += [f"(notifies read with the keys in `{c['keys']}/`; NAT-D and other "
                          "routine status notifies omitted)", ""]
        if s.get("esp"):
            for k, v in sorted(s["esp"].items()):
                lines.append(f"- ESP {k}: {v['packets']} packets, SPI {', '.join(v['spis'])}")
        for k, v in s.get("openvpn", {}).items():
            lines.append(f"- OpenVPN from {k}: {v} packets")
        for k, v in s.get("wireguard", {}).items():
            lines.append(f"- WireGuard from {k}: {v} packets")
        extra = []
        if s.get("nat_keepalives"):
            extra.append(f"{s['nat_keepalives']} NAT keepalives")
        if s.get("icmp"):
            extra.append(f"{s['icmp']} ICMP error/echo messages outside the tunnel")
        if s.get("ip_fragments"):
            extra.append(f"{s['ip_fragments']} IP fragments")
        if extra:
            lines.append("- " + ", ".join(extra))
        lines.append("")
    lines += ["## Expected pcapvpn findings", ""]

    def fl(items):
        return ", ".join(f"`{f['code']}` ({f['basis']})" for f in items) or "none"
    lines.append(f"- without keys: {fl(sc.keyless)}")
    if any(c["keys"] for c in exp["captures"]):
        lines.append(f"- with keys (additionally): {fl(sc.with_keys)}")
    lines.append(f"- must not report: {', '.join('`%s`' % c for c in sc.forbidden) or 'nothing listed'}")
    vlines = []
    for c in exp["captures"]:
        for key, label in (("verdicts", ""), ("verdicts_with_keys", " (with keys)")):
            for v in c.get(key, []):
                stage = f" at {v['stage']}" if v.get("stage") else ""
                prim = f", primary `{v['primary']}`" if v.get("primary") else ""
                vlines.append(f"| `{c['file']}`{label} | {v['tunnel']} | {v['verdict']}{stage}"
                              f"{prim} | {v['why']} |")
    if vlines:
        lines += ["", "## Expected verdicts (the truth, from the daemons' logs and the design)",
                  "", "| capture | tunnel | verdict | why |", "| --- | --- | --- | --- |", *vlines]
    if sc.pcapvpn_today:
        lines += ["", "## pcapvpn today", "", sc.pcapvpn_today]
    lines += ["", "Machine-readable: `expected.json` (findings + tshark-verifiable facts, "
              "checked by `tests/project/test_lab.py`).", ""]
    if sc.notes:
        lines += ["## Notes", "", sc.notes, ""]
    status = sorted(outdir.glob("*-status.txt"))
    if status:
        lines += ["## Gateway status at the end", "",
                  "Saved before the daemons were stopped: "
                  + ", ".join(f"`{p.name}`" for p in status)
                  + " (strongSwan `swanctl --list-sas`, libreswan `ipsec status` / `ipsec "
                    "trafficstatus` via `whack`, OpenVPN's status file).", ""]
    files = sorted(p.name + ("/" if p.is_dir() else "") for p in outdir.iterdir())
    lines += ["## Files", "", ", ".join(f"`{f}`" for f in files if f != "README.md"), ""]
    return "\n".join(lines)


# ------------------------------------------------------------------ captures/README.md

CAPTURE_EXT = (".pcap", ".pcapng", ".cap", ".pcap.gz", ".pcapng.gz")


def _other_row(cap: Path, captures: Path) -> tuple[str, str]:
    """(origin, what it shows) for a non-lab capture, from a README table row naming it."""
    d = cap.parent
    while True:
        readme = d / "README.md"
        if readme.exists():
            rel = cap.relative_to(d).as_posix()
            for line in readme.read_text(errors="replace").splitlines():
                if line.startswith("|") and f"`{rel}`" in line:
                    cells = [c.strip() for c in line.strip().strip("|").split("|")]
                    return (f"{cells[1] if len(cells) > 1 else '?'} "
                            f"(see `{readme.relative_to(captures).as_posix()}`)",
                            cells[-1] if len(cells) > 2 else "")
            return (f"see `{readme.relative_to(captures).as_posix()}`", "")
        if d == captures:
            return ("undocumented", "")
        d = d.parent


def write_index(captures: Path) -> Path:
    """Regenerate captures/README.md: every capture under captures/ with its origin,
    scenario, expected findings and keys."""
    lab = captures / "lab"
    lines = ["# Captures shipped with pcapvpn", "",
             "Generated by `captures/lab/run --index` (also after every lab run); do not edit "
             "by hand: lab rows come from each scenario's `expected.json`, other rows from the "
             "README table next to the capture.", "",
             "## Lab captures (`lab/`)", "",
             "Real strongSwan 5.9.8 / libreswan 4.10 / OpenVPN 2.6 / wireguard-go daemons in network "
             "namespaces, produced by "
             "`captures/lab/run` (root; see `lab/README.md`). Keys are Wireshark UAT tables "
             "(`ikev2_decryption_table`, `ikev1_decryption_table`, `esp_sa`) in the directory "
             "named in the keys column; their origin is in `keys/SOURCE`.", "",
             "| capture | scenario | expected findings (keyless; +with keys) | expected verdict "
             "(primary) | keys |",
             "| --- | --- | --- | --- | --- |"]
    for exp_path in sorted(lab.glob("*/expected.json")):
        exp = json.loads(exp_path.read_text())
        name = exp["scenario"]
        kl = ", ".join(f["code"] for f in exp["expected_findings"]["keyless"]) or "none"
        wk = ", ".join(f["code"] for f in exp["expected_findings"]["with_keys"])
        fnd = kl + (f"; +{wk}" if wk else "")
        if exp["protocol"] in ("openvpn", "wireguard"):
            fnd += f" ({'OpenVPN' if exp['protocol'] == 'openvpn' else 'WireGuard'}: read without errors)"
        for c in exp["captures"]:
            keys = (f"`lab/{name}/{c['keys']}/` ({exp['generated'].get('keys_source')})"
                    if c.get("keys") else "none")
            verd = "; ".join(f"{v['verdict']}" + (f" ({v['primary']})" if v.get("primary")
                                                   else "") for v in c.get("verdicts", [])) or "-"
            lines.append(f"| `lab/{name}/{c['file']}` | {exp['title']} ({c['interface']}) | "
                         f"{fnd} | {verd} | {keys} |")
    others = sorted(p for p in captures.rglob("*")
                    if p.is_file() and p.name.endswith(CAPTURE_EXT)
                    and lab not in p.parents)
    lines += ["", "## Other captures", ""]
    if others:
        lines += ["| capture | origin | what it shows |", "| --- | --- | --- |"]
        for p in others:
            origin, what = _other_row(p, captures)
            lines.append(f"| `{p.relative_to(captures).as_posix()}` | {origin} | {what} |")
    else:
        lines.append("none")
    lines.append("")
    out = captures / "README.md"
    out.write_text("\n".join(lines))
    return out
