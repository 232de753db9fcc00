"""IKEv2 remote access with EAP (RFC 7296 §2.16): the gateway authenticates with its
certificate, the user with a name and password in EAP rounds carried by further IKE_AUTH
exchanges — the pattern of Windows' built-in IKEv2 client (EAP-MSCHAPv2) and of most vendor
remote-access gateways.  strongSwan plays both ends (``eap-mschapv2`` from Debian's
libcharon-extauth-plugins, ``eap-identity``).  Registered into
:data:`vpnlab.scenarios.SCENARIOS` on import.
"""

from __future__ import annotations

from .lab import Ctx
from .net import RIGHT_OUT
from .scenarios import NO_FAILURE, F, V, fact, ike, pairc, scenario, std, without
from .strongswan import plugin_load

USER = "labuser"
PASSWORD = '"pcapvpn-lab-eap-3d9a"'
WRONG_PASSWORD = '"pcapvpn-lab-eap-WRONG"'
METHOD = "eap-mschapv2"
EAP_CONF = ("IKEv2, gateway authenticated by its RSA certificate (lab CA), user labuser by "
            "EAP-MSCHAPv2 (EAP-Identity first), aes128-sha256-modp2048; ESP aes128-sha256")


def _eap(ctx: Ctx, client_password: str, gateway_password: str) -> None:
    kw = dict(auth="cert")
    lc, rc = pairc(ctx, left={"cert": "left"}, right={"cert": "right"}, **kw)
    lconn = lc["connections"]["lab"]
    rconn = rc["connections"]["lab"]
    # the client: EAP as labuser (no certificate of its own); the gateway asks for its identity
    lconn["local"] = {"auth": METHOD, "eap_id": USER}
    rconn["remote"] = {"auth": METHOD, "eap_id": "%any"}
    lc["secrets"] = {"eap-user": {"id": USER, "secret": client_password}}
    rc["secrets"] = {"eap-user": {"id": USER, "secret": gateway_password}}
    load = plugin_load("eap-identity", "eap-mschapv2", savekeys=bool(ctx.savekeys_so))
    settings = {"charon": {"load": load}}
    lfiles = {"x509ca/ca.crt": (ctx.pki / "ca.crt").read_text()}
    std(ctx, lc, rc, ls=settings, rs=settings, lfiles=lfiles,
        rfiles=ctx.cert_files("right", ("ca",)))
    ctx.start_capture()


@scenario(
    name="ikev2_eap_healthy", title="IKEv2 remote access: certificate + EAP-MSCHAPv2, healthy",
    protocol="ikev2",
    configured=EAP_CONF + ".",
    fault="none",
    shows="IKE_SA_INIT, then IKE_AUTH exchanges: the client's IDi without AUTH, the gateway's "
          "certificate, AUTH and EAP-Identity request, EAP-MSCHAPv2 challenge/response/success, "
          "the client's final AUTH and the CHILD SA; ESP both ways; DELETEs.",
    timeout=60,
    keyless=[F("NAT_ENCAPSULATION_FORCED", "inferred")],
    forbidden=NO_FAILURE,
    verdicts={"main": [V("healthy", None, "the gateway logs 'EAP method EAP_MSCHAPV2 succeeded', "
                         "the IKE SA and CHILD_SA are established and the pings were answered "
                         "through ESP both ways")]},
    facts=[ike(34, 2), ike(35, min=8), fact("ESP both ways", "esp", min=10)],
)
def ikev2_eap_healthy(ctx: Ctx) -> None:
    _eap(ctx, PASSWORD, PASSWORD)
    ctx.left.initiate()
    ctx.ping(5, check=True)


@scenario(
    name="ikev2_eap_wrong_password", title="IKEv2 remote access: EAP-MSCHAPv2 with a wrong "
    "user password", protocol="ikev2",
    configured=EAP_CONF + "; the gateway holds a different password for labuser.",
    fault="wrong EAP password (the user's credentials)",
    shows="IKE_SA_INIT and the first IKE_AUTH exchanges as in the healthy case; the gateway "
          "answers the client's MSCHAPv2 response with an MSCHAPv2 failure request (retry "
          "allowed; encrypted), the client gives up and sends an INFORMATIONAL with "
          "AUTHENTICATION_FAILED instead of a final AUTH; no CHILD SA, no ESP; one ping between "
          "the gateways' outer addresses 11 s later ends the capture.",
    timeout=60,
    keyless=[F("IKE_AUTH_FAILED", "inferred")],
    forbidden=without(NO_FAILURE, "IKE_AUTH_FAILED") + ["ESP_ONE_WAY"],
    verdicts={"main": [V("failing", "IKE_AUTH_FAILED",
                         "the gateway logs 'EAP-MS-CHAPv2 verification failed, retry (1)'; the "
                         "client logs 'EAP-MS-CHAPv2 failed with error "
                         "ERROR_AUTHENTICATION_FAILURE' and sends AUTH_FAILED",
                         stage="authentication")]},
    facts=[ike(34, 2), ike(35, min=4), fact("no ESP", "esp", count=0)],
)
def ikev2_eap_wrong_password(ctx: Ctx) -> None:
    _eap(ctx, PASSWORD, WRONG_PASSWORD)
    ctx.left.initiate(check=False, timeout=20)
    ctx.sleep(11)
    ctx.ping(1, src=None, dst=RIGHT_OUT)
