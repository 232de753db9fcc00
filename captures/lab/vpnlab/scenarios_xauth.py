"""IKEv1 remote access with XAUTH (the pattern of legacy Cisco/Fortinet/Palo Alto client VPNs):
Main Mode with a pre-shared key, then the gateway asks the user for a name and password in
Transaction exchanges (draft-beaulieu-ike-xauth-02: REQUEST/REPLY, then SET/ACK with the
XAUTH status), then Quick Mode.  strongSwan plays both ends (``xauth-generic`` on the gateway,
the user's password in its secrets).  Registered into :data:`vpnlab.scenarios.SCENARIOS` on
import.
"""

from __future__ import annotations

from .ipsec import LEFT_ID, RIGHT_ID
from .lab import Ctx
from .net import RIGHT_OUT
from .scenarios import NO_FAILURE, F, V, fact, ike, pairc, scenario, std, without
from .strongswan import plugin_load

USER = "labuser"
PASSWORD = '"pcapvpn-lab-xauth-7c1f"'
WRONG_PASSWORD = '"pcapvpn-lab-xauth-WRONG"'
XAUTH_CONF = ("IKEv1 Main Mode, PSK (group authentication) + XAUTH (user labuser, "
              "xauth-generic on the gateway), aes128-sha256-modp2048; Quick Mode ESP aes128-sha1")


def _xauth(ctx: Ctx, client_password: str, gateway_password: str) -> None:
    lc, rc = pairc(ctx, version=1, esp="aes128-sha1", secret_ids=False)
    # the client's second round: XAUTH as labuser; the gateway's second round for the peer
    lconn = lc["connections"]["lab"]
    lconn["local-xauth"] = {"auth": "xauth", "xauth_id": USER}
    rconn = rc["connections"]["lab"]
    rconn["remote-xauth"] = {"auth": "xauth"}
    lc["secrets"]["xauth-user"] = {"id": USER, "secret": client_password}
    rc["secrets"]["xauth-user"] = {"id": USER, "secret": gateway_password}
    assert lconn["local"]["id"] == LEFT_ID and rconn["local"]["id"] == RIGHT_ID
    # xauth-generic (Debian: libcharon-extauth-plugins) on top of the lab's plugin list
    load = plugin_load("xauth-generic", savekeys=bool(ctx.savekeys_so))
    settings = {"charon": {"load": load}}
    std(ctx, lc, rc, rs=settings, ls=settings)
    ctx.start_capture()


@scenario(
    name="ikev1_xauth_healthy", title="IKEv1 remote access: Main Mode PSK + XAUTH, healthy",
    protocol="ikev1",
    configured=XAUTH_CONF + ".",
    fault="none",
    shows="Main Mode (6 messages), two Transaction exchanges (XAUTH REQUEST/REPLY, then "
          "SET/ACK with status OK; encrypted), Quick Mode (3 messages), ESP both ways, "
          "DELETEs.",
    timeout=60,
    keyless=[F("NAT_ENCAPSULATION_FORCED", "inferred")],
    forbidden=NO_FAILURE + ["IKE_AGGRESSIVE_MODE_PSK"],
    verdicts={"main": [V("healthy", None, "the gateway logs 'XAuth authentication of "
                         "'labuser' successful', Quick Mode completed and the pings were "
                         "answered through ESP both ways")]},
    facts=[ike(2, 6), ike(6, min=4), ike(32, 3),
           fact("ESP both ways", "esp", min=10)],
)
def ikev1_xauth_healthy(ctx: Ctx) -> None:
    _xauth(ctx, PASSWORD, PASSWORD)
    ctx.left.initiate()
    ctx.ping(5, check=True)


@scenario(
    name="ikev1_xauth_failed", title="IKEv1 remote access: XAUTH with a wrong user password",
    protocol="ikev1",
    configured=XAUTH_CONF + "; the gateway holds a different password for labuser.",
    fault="wrong XAUTH password (the user's credentials)",
    shows="Main Mode completes (the group PSK is right); the gateway's XAUTH REQUEST is answered "
          "with the user's name and password, the gateway answers SET with status FAIL, the "
          "client acknowledges; both ends then destroy the IKE SA without a Delete (strongSwan "
          "logs 'destroying IKE_SA after failed XAuth authentication'); no Quick Mode, no ESP; "
          "one ping between the gateways' outer addresses 11 s later ends the capture.",
    timeout=60,
    keyless=[F("IKE_AUTH_FAILED", "inferred")],
    with_keys=[F("IKE_AUTH_FAILED", "decrypted")],
    forbidden=without(NO_FAILURE, "IKE_AUTH_FAILED") + ["ESP_ONE_WAY"],
    verdicts={"main": [V("failing", "IKE_AUTH_FAILED",
                         "the gateway logs 'XAuth authentication of 'labuser' failed' and destroys "
                         "the IKE SA before any Quick Mode", stage="authentication")]},
    facts=[ike(2, 6), ike(6, 4), ike(32, 0), fact("no ESP", "esp", count=0)],
)
def ikev1_xauth_failed(ctx: Ctx) -> None:
    _xauth(ctx, PASSWORD, WRONG_PASSWORD)
    ctx.left.initiate(check=False, timeout=20)
    # the capture must show the silence after XAUTH (an analyzer needs its answer timeout to
    # call a Quick Mode missing): wait, then one ping between the gateways' outer addresses
    # marks the time in the capture
    ctx.sleep(11)
    ctx.ping(1, src=None, dst=RIGHT_OUT)


@scenario(
    name="interop_strongswan_libreswan_xauth_failed", title="strongSwan IKEv1 XAUTH client, "
    "libreswan XAUTH server: wrong user password", protocol="ikev1",
    implementations=("strongswan", "libreswan"),
    configured="strongSwan 5.9.8 initiator (left): IKEv1 Main Mode PSK + XAUTH as labuser; "
               "libreswan 4.10 responder (right): `rightxauthserver=yes`, `leftxauthclient=yes`, "
               "`xauthby=file` (ipsec.d/passwd holds another password for labuser), "
               "aes128-sha2_256;modp2048.",
    fault="wrong XAUTH password (the user's credentials), libreswan as the gateway",
    shows="Main Mode completes; libreswan's XAUTH REQUEST is answered with the user's name and "
          "password, libreswan refuses them and ends the IKE SA; no Quick Mode, no ESP; one "
          "ping between the gateways' outer addresses 11 s later ends the capture.",
    timeout=90,
    keyless=[F("IKE_AUTH_FAILED", "inferred")],
    forbidden=without(NO_FAILURE, "IKE_AUTH_FAILED", "NAT_DETECTED") + ["ESP_ONE_WAY"],
    verdicts={"main": [V("failing", "IKE_AUTH_FAILED",
                         "libreswan logs the XAUTH failure for labuser and ends the IKE SA before "
                         "any Quick Mode", stage="authentication")]},
    facts=[ike(2, min=6), ike(6, min=2), ike(32, 0), fact("no ESP", "esp", count=0)],
)
def interop_strongswan_libreswan_xauth_failed(ctx: Ctx) -> None:
    import crypt  # noqa: PLC0415 - stdlib (deprecated in 3.11, present until 3.13): passwd hash

    from .ipsec import pair
    from .net import LEFT_OUT
    from .scenarios_libreswan import lsw_conn, lsw_secrets

    lc, _rc = pair(LEFT_OUT, version=1, esp="aes128-sha256", secret_ids=False)
    lconn = lc["connections"]["lab"]
    lconn["local-xauth"] = {"auth": "xauth", "xauth_id": USER}
    lc["secrets"]["xauth-user"] = {"id": USER, "secret": PASSWORD}
    load = plugin_load("xauth-generic", savekeys=bool(ctx.savekeys_so))
    ctx.charon("left", {"charon": {"load": load}}, lc)
    conn = lsw_conn(ikev2=False, extra={"rightxauthserver": "yes", "leftxauthclient": "yes",
                                        "xauthby": "file", "leftsubnet": None,
                                        "rightsubnet": None})
    pl = ctx.pluto("right", {"lab": conn}, lsw_secrets(), setup={"ikev1-policy": "accept"})
    hashed = crypt.crypt(WRONG_PASSWORD.strip('"'), crypt.mksalt(crypt.METHOD_SHA512))
    (pl.dir / "ipsec.d" / "passwd").write_text(f"{USER}:{hashed}:lab\n")
    pl.whack("--rereadsecrets")
    ctx.start_capture()
    ctx.left.initiate(check=False, timeout=20)
    ctx.sleep(11)
    ctx.ping(1, src=None, dst=RIGHT_OUT)
