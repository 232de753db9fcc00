"""The lab's scenarios: one capture each, with what was configured and what to expect."""

from __future__ import annotations

from .ipsec import pair
from .lab import Ctx, Scenario

SCENARIOS: dict[str, Scenario] = {}


def scenario(**kw):
    def deco(fn):
        sc = Scenario(body=fn, **kw)
        SCENARIOS[sc.name] = sc
        return fn
    return deco


def F(code: str, basis: str = "observed") -> dict:  # noqa: N802 - short helper
    return {"code": code, "basis": basis}


# strongswan.conf overrides common to most scenarios
FAST: dict = {}


# =========================================================================== IKEv2

@scenario(
    name="ikev2_healthy", title="IKEv2 PSK tunnel, AES-CBC/SHA-256, healthy", protocol="ikev2",
    configured="IKE aes128-sha256-modp2048, ESP aes128-sha256 (CBC + HMAC), PSK with FQDN IDs, "
               "tunnel 10.10.1.0/24 <-> 10.20.1.0/24, no DPD.",
    fault="none",
    shows="IKE_SA_INIT on 500, IKE_AUTH on 4500 (kernel-libipsec forces UDP encapsulation with a "
          "fake NAT-D hash), 5 pings through ESP-in-UDP both ways, DELETE INFORMATIONALs when the "
          "daemons stop.",
    fast=True, timeout=60,
    keyless=[],
    forbidden=["IKE_NO_RESPONSE", "IKE_NO_PROPOSAL_CHOSEN", "IKE_AUTH_FAILED", "ESP_ONE_WAY",
               "IKE_RETRANSMISSION", "DECODE_ERRORS", "NAT_T_BLOCKED", "ICMP_UNREACHABLE"],
    facts=[
        {"desc": "IKE_SA_INIT request and response", "filter": "isakmp.exchangetype == 34",
         "count": 2},
        {"desc": "IKE_AUTH request and response on 4500", "filter":
            "isakmp.exchangetype == 35 && udp.port == 4500", "count": 2},
        {"desc": "ESP from initiator", "filter": "esp && ip.src == 192.0.2.2", "min": 5},
        {"desc": "ESP from responder", "filter": "esp && ip.src == 198.51.100.2", "min": 5},
        {"desc": "one ESP SPI per direction", "filter": "esp && ip.src == 192.0.2.2",
         "field": "esp.spi", "distinct": 1},
        {"desc": "one ESP SPI per direction", "filter": "esp && ip.src == 198.51.100.2",
         "field": "esp.spi", "distinct": 1},
        {"desc": "all ESP decrypts with good ICV", "keys": True, "filter": "esp",
         "equal_to_filter": "esp.icv_good == 1"},
        {"desc": "IKE_AUTH decrypts: IDi is the FQDN", "keys": True,
         "filter": "isakmp.exchangetype == 35 && isakmp.id.type == 2", "min": 1},
    ],
)
def ikev2_healthy(ctx: Ctx) -> None:
    ctx.strongswan(({}, pair(ctx.topo.left_addr)[0]), ({}, pair(ctx.topo.left_addr)[1]))
    ctx.start_capture()
    ctx.left.initiate()
    ctx.ping(5, check=True)


@scenario(
    name="ikev2_no_proposal", title="IKEv2 IKE_SA_INIT answered with NO_PROPOSAL_CHOSEN",
    protocol="ikev2",
    configured="Initiator proposes only aes128-sha1-modp1024 (a weak legacy proposal); the "
               "responder accepts only aes256-sha384-ecp384.",
    fault="IKE proposal mismatch (configuration on the responder)",
    shows="One IKE_SA_INIT request and its response carrying only a NO_PROPOSAL_CHOSEN notify; "
          "nothing else (keyingtries = 1).",
    fast=True, timeout=60,
    keyless=[F("IKE_NO_PROPOSAL_CHOSEN"), F("IKE_WEAK_CRYPTO")],
    forbidden=["IKE_NO_RESPONSE", "IKE_AUTH_FAILED", "ESP_ONE_WAY", "DECODE_ERRORS"],
    facts=[
        {"desc": "IKE_SA_INIT request and response", "filter": "isakmp.exchangetype == 34",
         "count": 2},
        {"desc": "response carries NO_PROPOSAL_CHOSEN (14)",
         "filter": "isakmp.exchangetype == 34 && isakmp.flag_r == 1",
         "field": "isakmp.notify.msgtype", "values": ["14"]},
        {"desc": "no IKE_AUTH", "filter": "isakmp.exchangetype == 35", "count": 0},
        {"desc": "no ESP", "filter": "esp", "count": 0},
    ],
)
def ikev2_no_proposal(ctx: Ctx) -> None:
    lc, rc = pair(ctx.topo.left_addr, left={"proposals": "aes128-sha1-modp1024"},
                  right={"proposals": "aes256-sha384-ecp384"})
    ctx.strongswan(({}, lc), ({}, rc))
    ctx.start_capture()
    ctx.left.initiate(check=False, timeout=10)
    ctx.sleep(1)
