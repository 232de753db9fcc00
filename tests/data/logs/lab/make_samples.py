"""Regenerate the real log / status samples of tests/data/logs/lab/ (root, lab packages).

    sudo .venv/bin/python tests/data/logs/lab/make_samples.py [NAME ...]

Each sample is one short run of real strongSwan daemons in network namespaces created and
deleted by the capture lab's library (captures/lab/vpnlab: the same topology, configuration
builders and teardown as the lab), but it is *not* a lab scenario: it lives here, beside the
log tests that need it, and keeps what those tests read — the capture, both charons' logs and
``swanctl --list-sas`` of both daemons taken before they stop (``left.list-sas``,
``right.list-sas``), with a short README (what was done, what the files show).

Samples:

* ``counters_healthy``: IKEv2 tunnel, 20 pings through ESP-in-UDP; list-sas after the pings
  (kernel-libipsec's counters against the ESP on the wire).
* ``counters_oneway``: as ``ikev2_esp_oneway``: the router drops the responder's ESP (not its
  IKE) after IKE_AUTH; capture on m-l; list-sas of both sides (encaps vs decaps).
* ``answers_dropped``: the initiator's own firewall (nftables *in the left namespace*, input
  hook) drops IKE on UDP 4500 from the responder: the capture on m-l shows every IKE_AUTH
  response arriving while charon logs "retransmit N of request with message ID 1" and gives up.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[3]
sys.path.insert(0, str(ROOT / "captures" / "lab"))

from vpnlab import pki, proc, savekeys  # noqa: E402
from vpnlab.lab import Ctx, Scenario, execute  # noqa: E402
from vpnlab.scenarios import ikev2_esp_oneway, pairc, R, std  # noqa: E402

STAGE: dict[str, Path] = {}


def _save_list_sas(ctx: Ctx) -> None:
    out = STAGE[ctx.sc.name]
    for ch in (ctx.left, ctx.right):
        (out / f"{ch.side}.list-sas").write_text(ch.list_sas())


def counters_healthy(ctx: Ctx) -> None:
    lc, rc = pairc(ctx, proposals="aes128-sha256-ecp256")
    std(ctx, lc, rc)
    ctx.start_capture()
    ctx.left.initiate()
    ctx.ping(20, interval=0.1, check=True)
    time.sleep(0.5)
    _save_list_sas(ctx)


def counters_oneway(ctx: Ctx) -> None:
    ikev2_esp_oneway(ctx)  # the lab scenario's own steps, then the gateways' status
    time.sleep(0.5)
    _save_list_sas(ctx)


def answers_dropped(ctx: Ctx) -> None:
    ls = {"charon": {"retransmit_timeout": 2, "retransmit_base": 1.5, "retransmit_tries": 3}}
    lc, rc = pairc(ctx, proposals="aes128-sha256-ecp256")
    std(ctx, lc, rc, ls=ls)
    # the initiator's host firewall: IKE on 4500 from the responder never reaches charon
    ctx.topo.sh(ctx.topo.left, "nft", "-f", "-", input=(
        "table inet hostfw {\n chain in {\n  type filter hook input priority 0; policy accept;\n"
        f"  ip saddr {R} udp sport 4500 @th,64,32 0 drop\n }}\n}}\n"))
    ctx.start_capture()
    ctx.left.initiate(check=False, timeout=25)
    ctx.left.wait_log("giving up after", 30)


SAMPLES = {
    "counters_healthy": Scenario(
        name="counters_healthy", title="list-sas counters, healthy", protocol="ikev2",
        configured="", fault="none", shows="", body=counters_healthy, capture="m-r",
        timeout=60),
    "counters_oneway": Scenario(
        name="counters_oneway", title="list-sas counters, one-way ESP", protocol="ikev2",
        configured="", fault="responder ESP dropped by the router", shows="",
        body=counters_oneway, capture="m-l", timeout=60),
    "answers_dropped": Scenario(
        name="answers_dropped", title="IKE_AUTH answers dropped by the initiator's host firewall",
        protocol="ikev2", configured="", fault="left host input drops IKE on 4500 from right",
        shows="", body=answers_dropped, capture="m-l", timeout=90),
}


def main(names: list[str]) -> int:
    pki_dir = pki.ensure()
    so, note = savekeys.plugin_or_none()
    bad = 0
    for name in names or list(SAMPLES):
        sc = SAMPLES[name]
        stage = Path(f"/tmp/pcapvpn-logsample-{name}")
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir(parents=True)
        STAGE[name] = stage
        work = Path("/tmp/pcapvpn-logsample-out")
        res = execute(sc, work, so, pki_dir)
        if not res["ok"]:
            proc.log(f"{name}: FAILED {res['error']}")
            bad += 1
            continue
        dst = HERE / name
        shutil.rmtree(dst, ignore_errors=True)
        dst.mkdir()
        src = work / name
        for f in src.iterdir():
            if f.suffix in (".pcap", ".log"):
                shutil.copy(f, dst / f.name)
        for f in stage.iterdir():
            shutil.copy(f, dst / f.name)
        shutil.copy(src / "events.txt", dst / "events.txt")
        proc.log(f"{name}: ok in {res['seconds']} s -> {dst}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
