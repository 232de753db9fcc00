"""tshark-verifiable facts about a capture, with or without the scenario's keys.

A fact is a dict:

``{"desc": str, "filter": "<display filter>", "capture": "<file>" (default: the main one),
   "keys": bool (decrypt with the capture's key tables),
   one of: "count": N | "min": N | "max": N (frames matching the filter),
           "field": f + "values": [...] (every listed value occurs in f among matching frames)
                    | "distinct": N / "min_distinct": N (number of distinct values of f)
                    | "only": [...] (no other value occurs),
           "equal_to_filter": "<filter>" (frames matching filter == frames matching both)}``

Decryption: tshark 4.0 reads the UAT files ``ikev2_decryption_table``, ``ikev1_decryption_table``
and ``esp_sa`` from its personal configuration directory; a temporary one is made per call
and selected with the WIRESHARK_CONFIG_DIR environment variable (ESP decryption and ICV
checking are switched on with ``-o`` preferences).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

TABLES = ("ikev2_decryption_table", "ikev1_decryption_table", "esp_sa")
ESP_PREFS = ["-o", "esp.enable_encryption_decode:TRUE",
             "-o", "esp.enable_authentication_check:TRUE"]


class TsharkError(RuntimeError):
    pass


def tshark(pcap: Path, args: list[str], keys: Path | None = None, timeout: float = 120,
           decode_as: list[str] | None = None) -> str:
    env = dict(os.environ)
    tmp = tempfile.mkdtemp(prefix="vpnlab-ws-")
    try:
        cfg = Path(tmp) / "wireshark"
        cfg.mkdir()
        extra: list[str] = []
        if keys is not None:
            for t in TABLES:
                if (keys / t).exists():
                    shutil.copy(keys / t, cfg / t)
            extra = ESP_PREFS
        env["WIRESHARK_CONFIG_DIR"] = str(cfg)
        env["HOME"] = tmp
        for d in decode_as or ():
            extra += ["-d", d]
        cp = subprocess.run(["tshark", "-n", "-r", str(pcap), *extra, *args],
                            capture_output=True, text=True, timeout=timeout, env=env)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if cp.returncode != 0:
        raise TsharkError(f"tshark {' '.join(args)} failed: {cp.stderr.strip()[-500:]}")
    return cp.stdout


def frames(pcap: Path, flt: str, keys: Path | None = None, field: str | None = None,
           decode_as: list[str] | None = None) -> list[str]:
    """Frame numbers (or values of ``field``, one entry per frame) matching ``flt``."""
    fields = ["-e", "frame.number"] + (["-e", field] if field else [])
    out = tshark(pcap, ["-2", "-Y", flt, "-T", "fields", "-E", "occurrence=a",
                        "-E", "aggregator=,", *fields], keys=keys, decode_as=decode_as)
    rows = [line.split("\t") for line in out.splitlines() if line.strip()]
    if field:
        return [r[1] if len(r) > 1 else "" for r in rows]
    return [r[0] for r in rows]


def counts(pcap: Path, filters: list[str], keys: Path | None = None,
           decode_as: list[str] | None = None) -> list[int]:
    """Number of frames matching each display filter, in one tshark pass (io,stat)."""
    if not filters:
        return []
    for f in filters:
        if "," in f:
            raise TsharkError(f"filter must not contain a comma (io,stat): {f!r}")
    out = tshark(pcap, ["-q", "-z", "io,stat,0," + ",".join(filters)], keys=keys,
                 decode_as=decode_as)
    rows = [line for line in out.splitlines() if "<>" in line]
    if not rows:  # empty capture
        return [0] * len(filters)
    cells = [c.strip() for c in rows[-1].strip().strip("|").split("|")]
    # cells: interval, then (frames, bytes) per filter
    nums = [int(c) for c in cells[1:] if c]
    return nums[0::2][: len(filters)]


def _check_count(fact: dict, n: int, both: int | None) -> str | None:
    flt = fact["filter"]
    if "count" in fact and n != fact["count"]:
        return f"{fact['desc']}: {n} frames match {flt!r}, expected {fact['count']}"
    if "min" in fact and n < fact["min"]:
        return f"{fact['desc']}: {n} frames match {flt!r}, expected >= {fact['min']}"
    if "max" in fact and n > fact["max"]:
        return f"{fact['desc']}: {n} frames match {flt!r}, expected <= {fact['max']}"
    if both is not None and (both != n or n == 0):
        return (f"{fact['desc']}: {both} of {n} frames matching {flt!r} also match "
                f"{fact['equal_to_filter']!r}")
    return None


def _check_field(fact: dict, vals: list[str]) -> str | None:
    flat = {v for row in vals for v in row.split(",") if v}
    if "values" in fact:
        missing = [v for v in fact["values"] if v not in flat]
        if missing:
            return f"{fact['desc']}: {fact['field']} lacks {missing} (has {sorted(flat)})"
    if "only" in fact:
        extra = sorted(flat - set(fact["only"]))
        if extra:
            return f"{fact['desc']}: {fact['field']} has unexpected {extra}"
    if "min_distinct" in fact and len(flat) < fact["min_distinct"]:
        return (f"{fact['desc']}: {len(flat)} distinct {fact['field']} "
                f"(expected >= {fact['min_distinct']}: {sorted(flat)})")
    if "distinct" in fact and len(flat) != fact["distinct"]:
        return (f"{fact['desc']}: {len(flat)} distinct {fact['field']} "
                f"(expected {fact['distinct']}: {sorted(flat)})")
    return None


def check_all(expected: dict, scenario_dir: Path) -> list[str]:
    """Check every fact of an expected.json; return the failures (empty = all hold).

    Count facts of one (capture, keys) pair share one tshark pass.
    """
    main = expected["captures"][0]["file"]
    keys_for = {c["file"]: c.get("keys") for c in expected["captures"]}
    decode_for = {c["file"]: c.get("decode_as") for c in expected["captures"]}
    problems: list[str] = []
    groups: dict[tuple[str, str | None], list[dict]] = {}
    for fact in expected.get("facts", []):
        cap = fact.get("capture", main)
        kd = None
        if fact.get("keys"):
            kd = keys_for.get(cap)
            if not kd:
                problems.append(f"{fact['desc']}: no keys for {cap}")
                continue
        groups.setdefault((cap, kd), []).append(fact)
    for (cap, kd), group in groups.items():
        pcap = scenario_dir / cap
        keys = scenario_dir / kd if kd else None
        dec = decode_for.get(cap)
        try:
            cfacts = [f for f in group if "field" not in f]
            # "field has these values" facts become one count filter per value, so that
            # most scenarios need a single tshark pass per (capture, keys)
            vfacts = [f for f in group if "field" in f and set(f) <= {
                "desc", "filter", "field", "values", "keys", "capture"}]
            filters: list[str] = []
            for f in cfacts:
                filters.append(f["filter"])
                if "equal_to_filter" in f:
                    filters.append(f"({f['filter']}) && ({f['equal_to_filter']})")
            for f in vfacts:
                filters += [f"({f['filter']}) && {f['field']} == {v}" for v in f["values"]]
            nums = iter(counts(pcap, filters, keys, dec))
            for f in cfacts:
                n = next(nums)
                both = next(nums) if "equal_to_filter" in f else None
                msg = _check_count(f, n, both)
                if msg:
                    problems.append(msg)
            for f in vfacts:
                missing = [v for v in f["values"] if next(nums) == 0]
                if missing:
                    problems.append(f"{f['desc']}: {f['field']} never has {missing} in frames "
                                    f"matching {f['filter']!r}")
            for f in group:
                if "field" in f and f not in vfacts:
                    msg = _check_field(f, frames(pcap, f["filter"], keys, f["field"], dec))
                    if msg:
                        problems.append(msg)
        except TsharkError as exc:
            problems.append(f"{cap}: {exc}")
    return problems


def decode_errors(pcap: Path, keys: Path | None = None) -> list[str]:
    """Malformed-packet expert infos tshark reports (empty list when clean)."""
    out = tshark(pcap, ["-Y", "_ws.malformed || _ws.expert.severity == error",
                        "-T", "fields", "-e", "frame.number", "-e", "_ws.expert.message"],
                 keys=keys)
    return [line for line in out.splitlines() if line.strip()]
