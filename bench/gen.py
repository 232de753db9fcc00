#!/usr/bin/env python3
"""Deterministic generator of a large synthetic IPsec capture for the benchmark harness.

    python bench/gen.py --packets 1000000 --out bench/out/vpn-1m.pcap --ground-truth bench/out/vpn-1m.json

Same arguments → byte-identical file (fixed seed, integer-microsecond clock, no wall-clock or
hash-order dependence).  The file is classic pcap, Ethernet, microsecond timestamps, written with
the project's own ``dissect.vpn.capture.PcapWriter``.

What is in it (see bench/README.md for the full list):

* 20 gateway pairs in documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
  2001:db8::/32): 18 established IKEv2 tunnels (16 IPv4, 2 IPv6) and 2 failing ones;
* per established tunnel: IKE_SA_INIT (SA with proposals, KE, Nonce, NAT-D notifies with
  SHA-1(SPIi|SPIr|IP|port), IKEV2_FRAGMENTATION_SUPPORTED, SIGNATURE_HASH_ALGORITHMS, Vendor IDs),
  IKE_AUTH (SK payload, next payload IDi/IDr, random "ciphertext") — on UDP 4500 behind the
  Non-ESP marker for NATed initiators, on 500 otherwise — then ESP both ways (native IP protocol 50,
  or UDP 4500 for the NATed ones), per-SA sequence numbers from 1;
* NAT keepalives (0xFF on 4500) every ~20 s from NATed initiators, liveness checks (empty
  INFORMATIONAL, request + response) every ~30 s;
* faults: one-way ESP (one reverse SA stops), an unanswered IKE_SA_INIT retransmitted with
  strongSwan's backoff (4 s * 1.8^n), an IKE_SA_INIT answered with NO_PROPOSAL_CHOSEN, sequence
  gaps on one ESP SA.

Clock: the capture lasts ``packets / pps`` seconds (default 10,000 packets/s, so 1M packets span
100 s); ESP fills every slot not taken by a control packet.  Fault times are placed relative to
that span, so small files contain the same kinds of faults, only compressed.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
import os
import random
import struct
import sys
import time

from functools import partial

from dissect.vpn.capture import PcapngWriter, PcapWriter

GENERATOR_VERSION = 1
DEFAULT_SEED = 20240611
DEFAULT_PPS = 10_000
DEFAULT_PACKETS = 1_000_000
START_US = 1_700_000_000_000_000          # 2023-11-14T22:13:20Z, capture start
LINKTYPE_ETHERNET = 1

# IKEv2 numbers (RFC 7296 §3, IANA "IKEv2 Parameters")
IKE_SA_INIT, IKE_AUTH, INFORMATIONAL = 34, 35, 37
F_I, F_R = 0x08, 0x20
PL_SA, PL_KE, PL_IDI, PL_IDR, PL_CERTREQ, PL_NONCE, PL_NOTIFY, PL_VID, PL_SK = (
    33, 34, 35, 36, 38, 40, 41, 43, 46)
T_ENCR, T_PRF, T_INTEG, T_DH = 1, 2, 3, 4
ENCR_3DES, ENCR_AES_CBC, ENCR_AES_GCM16 = 3, 12, 20
PRF_SHA1, PRF_SHA256, PRF_SHA384 = 2, 5, 6
INTEG_SHA1_96, INTEG_SHA256_128 = 2, 12
DH_MODP1024, DH_MODP2048, DH_ECP256, DH_X25519 = 2, 14, 19, 31
KE_LEN = {DH_MODP1024: 128, DH_MODP2048: 256, DH_ECP256: 64, DH_X25519: 32}
N_NO_PROPOSAL_CHOSEN = 14
N_AUTHENTICATION_FAILED = 24
N_COOKIE = 16390
N_NAT_SRC, N_NAT_DST = 16388, 16389
N_FRAG_SUPPORTED, N_SIG_HASH = 16430, 16431
ATTR_KEYLEN = 0x800E                      # TV format, attribute type 14 (Key Length)

# strongSwan's default retransmission: timeout 4 s, base 1.8, 5 retransmits, then give up.
RETX_TIMEOUT, RETX_BASE, RETX_TRIES = 4.0, 1.8, 5

# --------------------------------------------------------------------------------------------
# byte helpers


def _csum(data: bytes) -> int:
    """Internet checksum (RFC 1071) of ``data``."""
    if len(data) & 1:
        data += b"\x00"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _mac(n: int) -> bytes:
    # RFC 7042 documentation MAC range 00-00-5E-00-53-00 .. 00-00-5E-00-53-FF
    return bytes((0x00, 0x00, 0x5E, 0x00, 0x53, n & 0xFF))


def gpl(np: int, body: bytes) -> bytes:
    """IKEv2 generic payload header + body."""
    return struct.pack("!BBH", np, 0, 4 + len(body)) + body


def transform(last: bool, ttype: int, tid: int, keylen: int = 0) -> bytes:
    attrs = struct.pack("!HH", ATTR_KEYLEN, keylen) if keylen else b""
    return struct.pack("!BBHBBH", 0 if last else 3, 0, 8 + len(attrs), ttype, 0, tid) + attrs


def proposal(last: bool, num: int, transforms: list[tuple]) -> bytes:
    body = b"".join(transform(i == len(transforms) - 1, *t) for i, t in enumerate(transforms))
    return struct.pack("!BBHBBBB", 0 if last else 2, 0, 8 + len(body), num, 1, 0,
                       len(transforms)) + body


def sa_payload(proposals: list[tuple[int, list[tuple]]]) -> bytes:
    return b"".join(proposal(i == len(proposals) - 1, num, tr)
                    for i, (num, tr) in enumerate(proposals))


def notify(ntype: int, data: bytes = b"") -> bytes:
    return struct.pack("!BBH", 0, 0, ntype) + data


def chain(payloads: list[tuple[int, bytes]]) -> tuple[int, bytes]:
    """[(type, body), ...] → (first payload type, chained payload bytes)."""
    out = []
    for i, (_, body) in enumerate(payloads):
        np = payloads[i + 1][0] if i + 1 < len(payloads) else 0
        out.append(gpl(np, body))
    return (payloads[0][0] if payloads else 0), b"".join(out)


def ike_message(spii: bytes, spir: bytes, exch: int, flags: int, msgid: int,
                payloads: list[tuple[int, bytes]]) -> bytes:
    np, body = chain(payloads)
    return spii + spir + struct.pack("!BBBBII", np, 0x20, exch, flags, msgid, 28 + len(body)) + body


def natd(spii: bytes, spir: bytes, addr: bytes, port: int) -> bytes:
    """RFC 7296 §2.23: SHA-1(SPIi | SPIr | IP address | port)."""
    return hashlib.sha1(spii + spir + addr + struct.pack("!H", port)).digest()


# --------------------------------------------------------------------------------------------
# wire: one direction between two addresses


class Path:
    """Ethernet + IP framing for one direction (src → dst) as seen at the capture point."""

    def __init__(self, src: bytes, dst: bytes, mac_src: int, mac_dst: int, ident: int):
        self.src, self.dst = src, dst
        self.v6 = len(src) == 16
        self.eth = _mac(mac_dst) + _mac(mac_src) + (b"\x86\xdd" if self.v6 else b"\x08\x00")
        self.ident = ident            # IPv4 identification counter (shared by all packets)

    def next_ident(self) -> int:
        self.ident = (self.ident + 1) & 0xFFFF
        return self.ident

    def ip(self, proto: int, payload: bytes) -> bytes:
        if self.v6:
            return (self.eth + struct.pack("!IHBB", 0x60000000, len(payload), proto, 64)
                    + self.src + self.dst + payload)
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), self.next_ident(), 0x4000,
                          64, proto, 0, self.src, self.dst)
        hdr = hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:]
        return self.eth + hdr + payload

    def udp(self, sport: int, dport: int, payload: bytes, checksum: bool = True) -> bytes:
        ulen = 8 + len(payload)
        seg = struct.pack("!HHHH", sport, dport, ulen, 0) + payload
        if checksum:
            pseudo = (self.src + self.dst + struct.pack("!BBH", 0, 17, ulen) if not self.v6
                      else self.src + self.dst + struct.pack("!IxxxB", ulen, 17))
            c = _csum(pseudo + seg) or 0xFFFF
            seg = seg[:6] + struct.pack("!H", c) + seg[8:]
        return self.ip(17, seg)


# --------------------------------------------------------------------------------------------
# the scenario


def _v4(s: str) -> bytes:
    return ipaddress.IPv4Address(s).packed


def _v6(s: str) -> bytes:
    return ipaddress.IPv6Address(s).packed


def _addr(b: bytes) -> str:
    return str(ipaddress.ip_address(b))


STRONGSWAN_VID = hashlib.md5(b"strongSwan").digest()


class Scenario:
    """Builds the control packets (IKE, keepalives, liveness) and the ESP SA table."""

    def __init__(self, packets: int, seed: int, pps: int):
        self.rng = random.Random(seed)
        self.packets = packets
        self.pps = pps
        self.span_us = max(1, packets * 1_000_000 // pps)
        self.end_us = START_US + self.span_us
        self.events = []          # (t_us, order, frame bytes, record-or-None)
        self.sas = []             # ESP SA dicts
        self.tunnels = []         # ground-truth tunnel dicts
        self.faults = []
        self._order = 0
        self._mac = 0x10

    # -- helpers
    def _emit(self, t_us: int, frame: bytes, record: dict | None) -> None:
        if t_us < self.end_us:
            self.events.append((t_us, self._order, frame, record))
            self._order += 1

    def _paths(self, a: bytes, b: bytes):
        self._mac += 2
        ident_a = self.rng.randrange(0x10000)
        ident_b = self.rng.randrange(0x10000)
        return (Path(a, b, self._mac, self._mac + 1, ident_a),
                Path(b, a, self._mac + 1, self._mac, ident_b))

    def _ike_send(self, t_us, path, sport, dport, msg, rec_list, info, marker):
        payload = (b"\x00\x00\x00\x00" + msg) if marker else msg
        frame = path.udp(sport, dport, payload)
        rec = dict(info, ts_us=t_us, sport=sport, dport=dport)
        if rec_list is not None:
            rec_list.append(rec)
        self._emit(t_us, frame, rec)
        return rec

    # -- building blocks
    def init_request(self, spii, i_addr_hash, i_port_hash, r_addr, r_port, group, proposals,
                     vids, ke=None, nonce=None, cookie=None):
        zero = b"\x00" * 8
        rng = self.rng
        # a retry after a COOKIE response starts with the N(COOKIE) (RFC 7296 §2.6)
        pl = [(PL_NOTIFY, notify(N_COOKIE, cookie))] if cookie else []
        pl += [(PL_SA, sa_payload(proposals)),
              (PL_KE, struct.pack("!HH", group, 0) + (ke or rng.randbytes(KE_LEN[group]))),
              (PL_NONCE, nonce or rng.randbytes(32)),
              (PL_NOTIFY, notify(N_NAT_SRC, natd(spii, zero, i_addr_hash, i_port_hash))),
              (PL_NOTIFY, notify(N_NAT_DST, natd(spii, zero, r_addr, r_port))),
              (PL_NOTIFY, notify(N_FRAG_SUPPORTED)),
              (PL_NOTIFY, notify(N_SIG_HASH, struct.pack("!4H", 2, 3, 4, 5)))]
        pl += [(PL_VID, v) for v in vids]
        return ike_message(spii, zero, IKE_SA_INIT, F_I, 0, pl)

    def init_response(self, spii, spir, r_addr, r_port, i_obs_addr, i_obs_port, group, chosen,
                      vids, certreq):
        rng = self.rng
        pl = [(PL_SA, sa_payload([chosen])),
              (PL_KE, struct.pack("!HH", group, 0) + rng.randbytes(KE_LEN[group])),
              (PL_NONCE, rng.randbytes(32)),
              (PL_NOTIFY, notify(N_NAT_SRC, natd(spii, spir, r_addr, r_port))),
              (PL_NOTIFY, notify(N_NAT_DST, natd(spii, spir, i_obs_addr, i_obs_port)))]
        if certreq:
            pl.append((PL_CERTREQ, b"\x04" + rng.randbytes(20 * certreq)))
        pl += [(PL_NOTIFY, notify(N_FRAG_SUPPORTED)),
               (PL_NOTIFY, notify(N_SIG_HASH, struct.pack("!4H", 2, 3, 4, 5)))]
        pl += [(PL_VID, v) for v in vids]
        return ike_message(spii, spir, IKE_SA_INIT, F_R, 0, pl)

    def sk(self, inner_np: int, plain_len: int, gcm: bool) -> bytes:
        """SK payload body: IV, random 'ciphertext' (padded), ICV."""
        rng = self.rng
        if gcm:
            ct = (plain_len + 1 + 3) & ~3
            return rng.randbytes(8 + ct + 16)
        ct = (plain_len + 1 + 15) & ~15
        return rng.randbytes(16 + ct + 16)

    def sk_message(self, spii, spir, exch, flags, msgid, inner_np, plain_len, gcm):
        body = self.sk(inner_np, plain_len, gcm)
        np = inner_np
        return spii + spir + struct.pack("!BBBBII", PL_SK, 0x20, exch, flags, msgid,
                                         28 + 4 + len(body)) + gpl(np, body)

    # -- the world
    def build(self) -> None:
        rng = self.rng
        n_tunnels = 18
        hubs4 = [_v4("203.0.113.1"), _v4("203.0.113.2"), _v4("192.0.2.1"), _v4("192.0.2.2")]
        hubs6 = [_v6("2001:db8:b::1"), _v6("2001:db8:b::2")]
        first_act = None
        for i in range(n_tunnels):
            v6 = i >= 16
            if v6:
                ini = _v6(f"2001:db8:a::{i - 15:x}")
                res = hubs6[i % 2]
            else:
                ini = _v4(f"198.51.100.{10 + i}")
                res = hubs4[i % 4]
            nat = (not v6) and i % 3 == 1
            remap = nat and (i // 3) % 2 == 1        # NAT also rewrites the ports
            gcm = i % 2 == 0
            group = (DH_MODP2048, DH_X25519, DH_ECP256)[i % 3]
            t = START_US + 10_000 + i * 20_000 + rng.randrange(5_000)
            rtt = 4_000 + (i * 7_919) % 40_000
            act = self._tunnel(i, ini, res, nat, remap, gcm, group, t, rtt)
            first_act = act if first_act is None else min(first_act, act)
        self.first_act = first_act
        self._fault_unanswered(START_US + 50_000)
        self._fault_no_proposal(START_US + 120_000)
        self._fault_one_way(3)
        self._fault_seq_gaps(7)

    def _tunnel(self, i, ini, res, nat, remap, gcm, group, t0, rtt) -> int:
        rng = self.rng
        p_ir, p_ri = self._paths(ini, res)
        spii, spir = rng.randbytes(8), rng.randbytes(8)
        inside = _v4(f"10.{i}.0.2") if nat else ini          # initiator's address before NAT
        if remap:
            obs500, obs4500 = 40_000 + i * 17, 41_000 + i * 17
        else:
            obs500, obs4500 = 500, 4500
        if gcm:
            encr = [(T_ENCR, ENCR_AES_GCM16, 256), (T_PRF, PRF_SHA256), (T_DH, group)]
        else:
            encr = [(T_ENCR, ENCR_AES_CBC, 256), (T_INTEG, INTEG_SHA256_128), (T_PRF, PRF_SHA256),
                    (T_DH, group)]
        dh = [(T_DH, g) for g in (group, DH_X25519, DH_ECP256, DH_MODP2048) if g != group][:2]
        dh.insert(0, (T_DH, group))            # the KE payload's group is proposed first
        props = [(1, [(T_ENCR, ENCR_AES_CBC, 256), (T_ENCR, ENCR_AES_CBC, 128),
                      (T_INTEG, INTEG_SHA256_128), (T_PRF, PRF_SHA256), (T_PRF, PRF_SHA384)]
                  + dh),
                 (2, [(T_ENCR, ENCR_AES_GCM16, 256), (T_ENCR, ENCR_AES_GCM16, 128),
                      (T_PRF, PRF_SHA256), (T_PRF, PRF_SHA384)] + dh)]
        chosen = (2 if gcm else 1, encr)
        vid_i = [STRONGSWAN_VID] if i % 2 == 0 else [rng.randbytes(16)]
        vid_r = [STRONGSWAN_VID, rng.randbytes(20)] if i % 4 < 2 else [rng.randbytes(16)]
        ike_frames = []
        info = {"tunnel": i}
        # IKE_SA_INIT on 500
        msg = self.init_request(spii, inside, 500, res, 500, group, props, vid_i)
        self._ike_send(t0, p_ir, obs500, 500,
                       msg, ike_frames, dict(info, exchange="IKE_SA_INIT", msgid=0, response=False),
                       False)
        t1 = t0 + 1_500 + rng.randrange(1_500)
        msg = self.init_response(spii, spir, res, 500, ini, obs500, group, chosen, vid_r,
                                 certreq=(i % 3))
        self._ike_send(t1, p_ri, 500, obs500,
                       msg, ike_frames, dict(info, exchange="IKE_SA_INIT", msgid=0, response=True),
                       False)
        # IKE_AUTH: on 4500 behind the Non-ESP marker after NAT detection, else on 500
        ip_, rp_ = (obs4500, 4500) if nat else (obs500, 500)
        t2 = t1 + rtt + 2_000 + rng.randrange(2_000)
        msg = self.sk_message(spii, spir, IKE_AUTH, F_I, 1, PL_IDI, 300 + rng.randrange(700), gcm)
        self._ike_send(t2, p_ir, ip_, rp_, msg, ike_frames,
                       dict(info, exchange="IKE_AUTH", msgid=1, response=False), nat)
        t3 = t2 + 3_000 + rng.randrange(3_000)
        msg = self.sk_message(spii, spir, IKE_AUTH, F_R, 1, PL_IDR, 250 + rng.randrange(600), gcm)
        self._ike_send(t3, p_ri, rp_, ip_, msg, ike_frames,
                       dict(info, exchange="IKE_AUTH", msgid=1, response=True), nat)
        act = t3 + rtt
        # ESP SAs (the two directions of the child SA)
        encap = "udp" if nat else "ip"
        w = 1 + rng.choice((0, 0, 1, 2, 4))
        heavy = rng.randrange(2)              # which direction carries more
        sa_ir = self._sa(i, p_ir, encap, ip_, rp_, gcm, act, w * (3 if heavy == 0 else 2))
        sa_ri = self._sa(i, p_ri, encap, rp_, ip_, gcm, act, w * (3 if heavy == 1 else 2))
        # NAT keepalives from the NATed initiator, ~every 20 s
        keepalives = []
        if nat:
            t = act + rng.randrange(1_000_000, 20_000_000)
            while t < self.end_us:
                rec = {"tunnel": i, "ts_us": t}
                keepalives.append(rec)
                self._emit(t, p_ir.udp(obs4500, 4500, b"\xff"), rec)
                t += 20_000_000 + rng.randrange(-200_000, 200_000)
        # liveness (empty INFORMATIONAL) ~every 30 s; even tunnels: initiator asks, odd: responder
        dpd = []
        mid = {True: 2, False: 0}
        t = act + rng.randrange(5_000_000, 30_000_000)
        while t < self.end_us:
            by_ini = i % 2 == 0
            m = mid[by_ini]
            mid[by_ini] += 1
            req_path, resp_path = (p_ir, p_ri) if by_ini else (p_ri, p_ir)
            rq_s, rq_d = (ip_, rp_) if by_ini else (rp_, ip_)
            req_flags = F_I if by_ini else 0
            resp_flags = F_R if by_ini else (F_R | F_I)
            rq = self.sk_message(spii, spir, INFORMATIONAL, req_flags, m, 0, 0, gcm)
            rs = self.sk_message(spii, spir, INFORMATIONAL, resp_flags, m, 0, 0, gcm)
            delay = (300 + rng.randrange(700)) if by_ini else (rtt + rng.randrange(700))
            r1 = self._ike_send(t, req_path, rq_s, rq_d, rq, None,
                                dict(info, exchange="INFORMATIONAL", msgid=m, response=False), nat)
            r2 = self._ike_send(t + delay, resp_path, rq_d, rq_s, rs, None,
                                dict(info, exchange="INFORMATIONAL", msgid=m, response=True), nat)
            dpd.append({"by": "initiator" if by_ini else "responder", "msgid": m,
                        "request": r1, "response": r2})
            t += 30_000_000 + rng.randrange(-500_000, 500_000)
        self.tunnels.append({
            "id": i, "ipver": 6 if len(ini) == 16 else 4,
            "initiator": _addr(ini), "responder": _addr(res),
            "nat": nat, "initiator_inside": _addr(inside) if nat else None,
            "initiator_ports": {"ike": obs500, "nat_t": obs4500 if nat else None},
            "ike_spi_i": spii.hex(), "ike_spi_r": spir.hex(),
            "dh_group": group, "encr": "aes-gcm-16-256" if gcm else "aes-cbc-256/hmac-sha256-128",
            "esp_encap": encap, "esp_sas": [sa_ir, sa_ri],
            "ike": ike_frames, "keepalives": keepalives, "liveness": dpd,
            "rtt_ms": rtt / 1000,
        })
        return act

    def _sa(self, tunnel, path, encap, sport, dport, gcm, act_us, weight) -> dict:
        spi = 0xC0000000 | self.rng.getrandbits(28)
        sa = {"tunnel": tunnel, "spi": f"{spi:08x}", "src": _addr(path.src), "dst": _addr(path.dst),
              "encap": encap, "sport": sport if encap == "udp" else None,
              "dport": dport if encap == "udp" else None, "gcm": gcm,
              "active_from_us": act_us, "active_until_us": None, "weight": weight,
              "_path": path, "_spi": spi, "_gaps": []}
        self.sas.append(sa)
        return sa

    def _fault_unanswered(self, t0):
        rng = self.rng
        p_ir, _ = self._paths(_v4("198.51.100.200"), _v4("192.0.2.200"))
        spii = rng.randbytes(8)
        props = [(1, [(T_ENCR, ENCR_AES_CBC, 256), (T_INTEG, INTEG_SHA256_128),
                      (T_PRF, PRF_SHA256), (T_DH, DH_MODP2048)])]
        msg = self.init_request(spii, p_ir.src, 500, p_ir.dst, 500, DH_MODP2048, props,
                                [STRONGSWAN_VID])
        sends = []
        t, wait = t0, RETX_TIMEOUT
        for n in range(RETX_TRIES + 1):            # retransmissions are byte-identical
            self._ike_send(t, p_ir, 500, 500, msg, sends,
                           {"tunnel": "unanswered", "exchange": "IKE_SA_INIT", "msgid": 0,
                            "response": False, "retransmission": n}, False)
            t += int(wait * 1_000_000)
            wait *= RETX_BASE
        self.faults.append({"type": "ike_no_response", "stage": "reachability",
                            "initiator": _addr(p_ir.src), "responder": _addr(p_ir.dst),
                            "ike_spi_i": spii.hex(), "exchange": "IKE_SA_INIT",
                            "give_up_us": t, "sends": sends})

    def _fault_no_proposal(self, t0):
        rng = self.rng
        p_ir, p_ri = self._paths(_v4("198.51.100.201"), _v4("203.0.113.50"))
        spii, spir = rng.randbytes(8), rng.randbytes(8)
        props = [(1, [(T_ENCR, ENCR_3DES, 0), (T_INTEG, INTEG_SHA1_96), (T_PRF, PRF_SHA1),
                      (T_DH, DH_MODP1024)])]
        frames = []
        msg = self.init_request(spii, p_ir.src, 500, p_ir.dst, 500, DH_MODP1024, props, [])
        self._ike_send(t0, p_ir, 500, 500, msg, frames,
                       {"tunnel": "no_proposal", "exchange": "IKE_SA_INIT", "msgid": 0,
                        "response": False}, False)
        msg = ike_message(spii, spir, IKE_SA_INIT, F_R, 0,
                          [(PL_NOTIFY, notify(N_NO_PROPOSAL_CHOSEN))])
        self._ike_send(t0 + 800, p_ri, 500, 500, msg, frames,
                       {"tunnel": "no_proposal", "exchange": "IKE_SA_INIT", "msgid": 0,
                        "response": True, "notify": "NO_PROPOSAL_CHOSEN"}, False)
        self.faults.append({"type": "no_proposal_chosen", "stage": "negotiation",
                            "initiator": _addr(p_ir.src), "responder": _addr(p_ir.dst),
                            "ike_spi_i": spii.hex(), "ike_spi_r": spir.hex(),
                            "request": frames[0], "response": frames[1]})

    def _fault_one_way(self, tunnel):
        sa = self.tunnels[tunnel]["esp_sas"][1]     # responder → initiator stops
        act = sa["active_from_us"]
        sa["active_until_us"] = act + max(1, (self.end_us - act) * 3 // 10)
        self.faults.append({"type": "esp_one_way", "stage": "dataplane", "tunnel": tunnel,
                            "stopped_spi": sa["spi"], "stopped_src": sa["src"],
                            "stopped_dst": sa["dst"], "working_spi":
                            self.tunnels[tunnel]["esp_sas"][0]["spi"],
                            "stop_after_us": sa["active_until_us"]})

    def _fault_seq_gaps(self, tunnel):
        sa = self.tunnels[tunnel]["esp_sas"][0]
        act = sa["active_from_us"]
        for frac, missing in ((25, 1), (50, 3), (75, 2)):
            sa["_gaps"].append((act + (self.end_us - act) * frac // 100, missing))
        self.faults.append({"type": "esp_seq_gap", "stage": "dataplane", "tunnel": tunnel,
                            "spi": sa["spi"], "gaps": []})


# --------------------------------------------------------------------------------------------
# a remote-access head-end with many clients (the grouping of repeated findings, issue 14)

MANY_HEADEND = "203.0.113.1"
MANY_SECONDS = 40


def generate_many_clients(stream, clients: int = 70, seed: int = DEFAULT_SEED) -> dict:
    """A remote-access head-end (203.0.113.1) and ``clients`` clients behind NAT (public
    addresses 198.51.100.10 and up, 10.x inside), each coming up as an IKEv2 head-end under load
    makes them: IKE_SA_INIT answered with a COOKIE, the retry with the cookie answered, NAT
    detected, IKE_AUTH on UDP 4500, then ESP in UDP both ways (2 packets/s each way) and NAT
    keepalives, for :data:`MANY_SECONDS` seconds.  Faults on a few clients, as a head-end sees
    them: the IKE_AUTH answered with an encrypted notify first (authentication refused:
    clients 10..17), an old client's proposal refused (NO_PROPOSAL_CHOSEN: 20..23), the
    head-end's ESP to the client stopping half-way (one-way: 30..32).  Deterministic (seed),
    classic pcap, Ethernet, microsecond timestamps.  Returns the ground truth."""
    sc = Scenario(1, seed, DEFAULT_PPS)
    rng = sc.rng
    end = START_US + MANY_SECONDS * 1_000_000
    sc.end_us = end
    hub = _v4(MANY_HEADEND)
    esp = []            # (t_us, order, frame)
    truth = []
    props = [(1, [(T_ENCR, ENCR_AES_GCM16, 256), (T_PRF, PRF_SHA256), (T_DH, DH_ECP256)])]
    old = [(1, [(T_ENCR, ENCR_3DES, 0), (T_INTEG, INTEG_SHA1_96), (T_PRF, PRF_SHA1),
                (T_DH, DH_MODP1024)])]
    for i in range(clients):
        pub = _v4(f"198.51.{100 + (10 + i) // 250}.{(10 + i) % 250}")
        inside = _v4(f"10.{1 + i // 250}.{i % 250}.2")
        c2h, h2c = sc._paths(pub, hub)
        spii, spir = rng.randbytes(8), rng.randbytes(8)
        t = START_US + 200_000 + i * 150_000 + rng.randrange(50_000)
        rtt = 20_000 + rng.randrange(60_000)
        kind = ("auth_failed" if 10 <= i < 18 else "no_proposal" if 20 <= i < 24
                else "one_way" if 30 <= i < 33 else "healthy")
        info = {"tunnel": i}
        group = DH_MODP1024 if kind == "no_proposal" else DH_ECP256
        offer = old if kind == "no_proposal" else props
        # the client's NAT translates its ports too (500 -> p500, 4500 -> p4500)
        p500, p4500 = 40_000 + i, 41_000 + i
        msg = sc.init_request(spii, inside, 500, hub, 500, group, offer, [])
        sc._ike_send(t, c2h, p500, 500, msg, None, dict(info, exchange="IKE_SA_INIT"), False)
        cookie = rng.randbytes(32)
        zero = b"\x00" * 8
        t += rtt
        sc._ike_send(t, h2c, 500, p500, ike_message(spii, zero, IKE_SA_INIT, F_R, 0,
                                                    [(PL_NOTIFY, notify(N_COOKIE, cookie))]),
                     None, dict(info, exchange="IKE_SA_INIT", cookie=True), False)
        t += 2_000
        msg = sc.init_request(spii, inside, 500, hub, 500, group, offer, [], cookie=cookie)
        sc._ike_send(t, c2h, p500, 500, msg, None, dict(info, exchange="IKE_SA_INIT"), False)
        t += rtt
        if kind == "no_proposal":
            sc._ike_send(t, h2c, 500, p500,
                         ike_message(spii, zero, IKE_SA_INIT, F_R, 0,
                                     [(PL_NOTIFY, notify(N_NO_PROPOSAL_CHOSEN))]),
                         None, dict(info, exchange="IKE_SA_INIT"), False)
            truth.append({"client": _addr(pub), "kind": kind})
            continue
        msg = sc.init_response(spii, spir, hub, 500, pub, p500, group, props[0], [], certreq=0)
        sc._ike_send(t, h2c, 500, p500, msg, None, dict(info, exchange="IKE_SA_INIT"), False)
        t += 3_000
        msg = sc.sk_message(spii, spir, IKE_AUTH, F_I, 1, PL_IDI, 400 + rng.randrange(200), True)
        sc._ike_send(t, c2h, p4500, 4500, msg, None, dict(info, exchange="IKE_AUTH"), True)
        t += rtt + 5_000
        first = PL_NOTIFY if kind == "auth_failed" else PL_IDR
        msg = sc.sk_message(spii, spir, IKE_AUTH, F_R, 1, first, 300 + rng.randrange(200), True)
        sc._ike_send(t, h2c, 4500, p4500, msg, None, dict(info, exchange="IKE_AUTH"), True)
        truth.append({"client": _addr(pub), "kind": kind, "ike_spi_i": spii.hex()})
        if kind == "auth_failed":
            continue
        spi_c, spi_h = (0xC1000000 | rng.getrandbits(24), 0xC2000000 | rng.getrandbits(24))
        stop = (t + end) // 2 if kind == "one_way" else end
        seq = [0, 0]
        tt = t + rtt
        while tt < end:
            for d, (path, spi) in enumerate(((c2h, spi_c), (h2c, spi_h))):
                ts = tt + d * 7_000 + rng.randrange(3_000)
                if ts >= end or (d == 1 and ts >= stop):
                    continue
                seq[d] += 1
                body = struct.pack("!II", spi, seq[d]) + rng.randbytes(100)
                sp, dp = (p4500, 4500) if d == 0 else (4500, p4500)
                esp.append((ts, len(esp), path.udp(sp, dp, body, checksum=False)))
            tt += 500_000
        ka = t + 15_000_000
        while ka < end:
            sc._emit(ka, c2h.udp(p4500, 4500, b"\xff"), None)
            ka += 15_000_000
    events = sorted([(e[0], e[1], e[2]) for e in sc.events]
                    + [(ts, 1 << 40 | o, fr) for ts, o, fr in esp])
    w = PcapWriter(stream, LINKTYPE_ETHERNET, nanosecond=False)
    for ts, _o, frame in events:
        w.write_packet(ts * 1000, frame)
    return {"generator": "bench/gen.py --many-clients", "generator_version": GENERATOR_VERSION,
            "seed": seed, "clients": truth, "headend": MANY_HEADEND, "packets": len(events)}


# --------------------------------------------------------------------------------------------
# ESP packet sizes: plaintext size mix → ESP length for the SA's cipher


def _size_tables(rng: random.Random, n: int = 4096):
    """Two tables of ESP lengths (SPI..ICV): AES-GCM-16 (IV 8, ICV 16) and AES-CBC +
    HMAC-SHA-256-128 (IV 16, ICV 16, 16-byte blocks).  Plaintext mix: 40 % small (40-120 bytes:
    ACKs, VoIP, DNS), 20 % medium (121-900), 40 % large (1000-1300, MSS-clamped bulk)."""
    gcm, cbc = [], []
    for _ in range(n):
        r = rng.random()
        if r < 0.40:
            p = rng.randrange(40, 121)
        elif r < 0.60:
            p = rng.randrange(121, 901)
        else:
            p = rng.randrange(1000, 1301)
        gcm.append(8 + 8 + ((p + 2 + 3) & ~3) + 16)
        cbc.append(8 + 16 + ((p + 2 + 15) & ~15) + 16)
    return gcm, cbc


# --------------------------------------------------------------------------------------------


def generate(stream, packets: int = DEFAULT_PACKETS, seed: int = DEFAULT_SEED,
             pps: int = DEFAULT_PPS, fmt: str = "pcap") -> dict:
    """Write the capture to the binary ``stream``; return the ground truth (JSON-ready dict).

    Timestamps go to the writer as integer nanoseconds (exact); the file has microsecond
    resolution (pcap: the classic usec magic; pcapng: if_tsresol 6).
    """
    sc = Scenario(packets, seed, pps)
    sc.build()
    rng = sc.rng
    events = sorted(sc.events, key=lambda e: (e[0], e[1]))
    if len(events) > packets:
        events = events[:packets]
    n_ctrl = len(events)
    n_esp = packets - n_ctrl
    gcm_sizes, cbc_sizes = _size_tables(rng)
    pool = rng.randbytes(65536 + 2048)

    # per-SA hot-path state
    sas = sc.sas
    nsa = len(sas)
    seqs = [0] * nsa
    count = [0] * nsa
    first_frame = [0] * nsa
    last_frame = [0] * nsa
    first_ts = [0] * nsa
    last_ts = [0] * nsa
    hdr_pack = []            # (kind, eth, base checksum, ident, addr bytes, spi, ports, sizes)
    for sa in sas:
        p = sa["_path"]
        sizes = gcm_sizes if sa["gcm"] else cbc_sizes
        if p.v6:
            hdr_pack.append((6, p.eth, 0, 0, p.src + p.dst, sa["_spi"], 0, 0, sizes))
        else:
            proto = 17 if sa["encap"] == "udp" else 50
            base = 0x4500 + 0x4000 + (64 << 8 | proto)
            for k in range(0, 8, 2):
                base += (p.src + p.dst)[k] << 8 | (p.src + p.dst)[k + 1]
            hdr_pack.append((4 if proto == 50 else 17, p.eth, base, p, p.src + p.dst, sa["_spi"],
                             sa["sport"] or 0, sa["dport"] or 0, sizes))

    # activity changes: (t, sa index, +1 start / -1 stop / 0 gap)
    changes = []
    for k, sa in enumerate(sas):
        changes.append((sa["active_from_us"], k, 1, 0))
        if sa["active_until_us"] is not None:
            changes.append((sa["active_until_us"], k, -1, 0))
        for t, missing in sa["_gaps"]:
            changes.append((t, k, 0, missing))
    changes.sort()
    changes.append((1 << 62, -1, 0, 0))
    ci = 0
    active = []              # SA index repeated by weight
    gap_fault = next(f for f in sc.faults if f["type"] == "esp_seq_gap")
    pending_gap = -1
    pending_missing = None

    s_ip4 = struct.Struct("!14s2sHH4sH8sII")
    s_udp4 = struct.Struct("!14s2sHH4sH8sHHHHII")
    s_ip6 = struct.Struct("!14sIHBB32sII")
    mid4 = {50: b"\x40\x00\x40\x32", 17: b"\x40\x00\x40\x11"}
    vhl = b"\x45\x00"

    esp_start = sc.first_act if sc.first_act is not None else START_US
    esp_span = max(1, sc.end_us - esp_start)
    step = max(1, esp_span // max(1, n_esp))
    getrandbits = rng.getrandbits

    if fmt == "pcapng":
        writer = PcapngWriter(stream)
        writer.add_interface(LINKTYPE_ETHERNET, tsresol=6)
        write = partial(writer.write_packet, 0)
    else:
        writer = PcapWriter(stream, LINKTYPE_ETHERNET, nanosecond=False)
        write = writer.write_packet
    fno = 0
    ei = 0
    next_ctrl = events[0][0] if events else 1 << 62
    for k in range(n_esp):
        r = getrandbits(56)
        t = esp_start + (k * esp_span) // n_esp + (r >> 40) % step
        # control packets due before this slot
        while next_ctrl <= t:
            et, _, frame, rec = events[ei]
            fno += 1
            write(et * 1000, frame)
            if rec is not None:
                rec["frame"] = fno
            ei += 1
            next_ctrl = events[ei][0] if ei < n_ctrl else 1 << 62
        while changes[ci][0] <= t:
            _, sidx, op, missing = changes[ci]
            ci += 1
            if op == 1:
                active.extend([sidx] * sas[sidx]["weight"])
            elif op == -1:
                active = [a for a in active if a != sidx]
            else:
                seqs[sidx] += missing
                pending_gap = sidx
                pending_missing = list(range(seqs[sidx] - missing + 1, seqs[sidx] + 1))
        sidx = active[(r & 0xFFFF) * len(active) >> 16]
        seq = seqs[sidx] + 1
        seqs[sidx] = seq
        kind, eth, base, path, addrs, spi, sp, dp, sizes = hdr_pack[sidx]
        esplen = sizes[(r >> 16) & 0xFFF]
        off = (r >> 28) & 0xFFFF
        body = pool[off:off + esplen - 8]
        if kind == 6:
            hdr = s_ip6.pack(eth, 0x60000000, esplen, 50, 64, addrs, spi, seq)
        else:
            ident = path.ident = (path.ident + 1) & 0xFFFF
            if kind == 4:
                total = 20 + esplen
                s = base + total + ident
                s = (s & 0xFFFF) + (s >> 16)
                s = (s & 0xFFFF) + (s >> 16)
                hdr = s_ip4.pack(eth, vhl, total, ident, mid4[50], ~s & 0xFFFF, addrs, spi, seq)
            else:
                total = 28 + esplen
                s = base + total + ident
                s = (s & 0xFFFF) + (s >> 16)
                s = (s & 0xFFFF) + (s >> 16)
                hdr = s_udp4.pack(eth, vhl, total, ident, mid4[17], ~s & 0xFFFF, addrs,
                                  sp, dp, 8 + esplen, 0, spi, seq)
        fno += 1
        write(t * 1000, hdr + body)
        if not count[sidx]:
            first_frame[sidx] = fno
            first_ts[sidx] = t
        count[sidx] += 1
        last_frame[sidx] = fno
        last_ts[sidx] = t
        if sidx == pending_gap:
            gap_fault["gaps"].append({"frame": fno, "ts_us": t, "missing_seqs": pending_missing})
            pending_gap = -1
    while ei < n_ctrl:
        et, _, frame, rec = events[ei]
        fno += 1
        write(et * 1000, frame)
        if rec is not None:
            rec["frame"] = fno
        ei += 1

    # ---- ground truth
    def clean(obj):
        """Drop records of packets that fell outside the file, and private keys."""
        if isinstance(obj, dict):
            return {k: clean(v) for k, v in obj.items() if not k.startswith("_")}
        if isinstance(obj, list):
            return [clean(v) for v in obj
                    if not (isinstance(v, dict) and "ts_us" in v and "frame" not in v)]
        return obj

    for k, sa in enumerate(sas):
        sa.update(packets=count[k], first_seq=1 if count[k] else None,
                  last_seq=seqs[k] if count[k] else None,
                  first_frame=first_frame[k] or None, last_frame=last_frame[k] or None,
                  first_ts_us=first_ts[k] or None, last_ts_us=last_ts[k] or None)
        sa.pop("gcm")
    for tun in sc.tunnels:
        tun["liveness"] = [d for d in tun["liveness"] if "frame" in d["request"]]
        for d in tun["liveness"]:
            if "frame" not in d["response"]:
                d["response"] = None
    for f in sc.faults:
        if f["type"] == "esp_one_way":
            sa = next(s for s in sas if s["spi"] == f["stopped_spi"])
            f["last_frame_stopped"] = sa["last_frame"]
            f["last_ts_us_stopped"] = sa["last_ts_us"]
    esp_total = sum(count)
    return clean({
        "generator": "bench/gen.py", "generator_version": GENERATOR_VERSION,
        "seed": seed, "format": fmt, "packets": fno, "pps": pps, "linktype": LINKTYPE_ETHERNET,
        "start_us": START_US, "end_us": sc.end_us, "duration_s": sc.span_us / 1e6,
        "counts": {"control": n_ctrl, "esp": esp_total},
        "notes": "frames are 1-based like Wireshark; *_us are integer microseconds since the epoch",
        "tunnels": sc.tunnels, "faults": sc.faults,
    })


def second_point(src: str, dst: str, shift_us: int = 3_217_001, delay_us: int = 40,
                 loss_every: int = 1000) -> dict:
    """The same traffic as a second capture point sees it (``--second-point``): every record
    of the classic pcap ``src`` copied to ``dst`` with its clock ``shift_us`` ahead, packets
    from the initiators' side (IPv4 sources in 192.0.2.0/24) ``delay_us`` later and the others
    ``delay_us`` earlier (the point lies between them, nearer the responders), and every
    ``loss_every``-th ESP packet from the initiators' side lost between the points (so the
    matching has losses to place).  Returns the truth: offset, delay, ESP packets dropped."""
    with open(src, "rb") as f:
        data = f.read()
    order = "<" if data[:4] == b"\xd4\xc3\xb2\xa1" else ">"
    hdr = struct.Struct(order + "IIII")
    out = bytearray(data[:24])
    off = 24
    esp_from_i = 0
    dropped = 0
    records = 0
    while off + 16 <= len(data):
        sec, usec, incl, orig = hdr.unpack_from(data, off)
        body = data[off + 16:off + 16 + incl]
        off += 16 + incl
        from_i = len(body) > 34 and body[12:14] == b"\x08\x00" and body[26:29] == b"\xc0\x00\x02"
        if from_i and (body[23] == 50 or (body[23] == 17 and body[36:38] == b"\x11\x94"
                                          and body[42:46] != b"\x00\x00\x00\x00")):
            esp_from_i += 1
            if loss_every and esp_from_i % loss_every == 0:
                dropped += 1
                continue
        t = sec * 1_000_000 + usec + shift_us + (delay_us if from_i else -delay_us)
        out += hdr.pack(t // 1_000_000, t % 1_000_000, incl, orig)
        out += body
        records += 1
    with open(dst, "wb") as f:
        f.write(out)
    return {"shift_s": shift_us / 1e6, "delay_s": delay_us / 1e6, "records": records,
            "esp_dropped": dropped}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--packets", type=int, default=DEFAULT_PACKETS)
    ap.add_argument("--out", default="bench/out/vpn-1m.pcap")
    ap.add_argument("--format", choices=("pcap", "pcapng"), default="pcap")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--pps", type=int, default=DEFAULT_PPS,
                    help="capture rate in packets/s (sets the capture duration)")
    ap.add_argument("--ground-truth", metavar="PATH.json")
    ap.add_argument("--many-clients", type=int, metavar="N", default=None,
                    help="instead: a remote-access head-end with N clients (generate_many_clients)")
    ap.add_argument("--second-point", metavar="PATH.pcap", default=None,
                    help="also write the same traffic as a second capture point sees it "
                         "(second_point: shifted clock, delays, 1 in 1000 initiator ESP lost)")
    args = ap.parse_args(argv)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    t0 = time.perf_counter()
    with open(args.out, "wb") as f:
        if args.many_clients:
            truth = generate_many_clients(f, args.many_clients, args.seed)
            truth["duration_s"] = MANY_SECONDS
        else:
            truth = generate(f, args.packets, args.seed, args.pps, args.format)
    dt = time.perf_counter() - t0
    if args.ground_truth:
        with open(args.ground_truth, "w") as f:
            json.dump(truth, f, indent=1, sort_keys=True)
            f.write("\n")
    print(f"{args.out}: {truth['packets']} packets, {truth['duration_s']:.1f} s of capture, "
          f"{os.path.getsize(args.out) / 1e6:.1f} MB, written in {dt:.1f} s", file=sys.stderr)
    if args.second_point:
        if args.format != "pcap":
            ap.error("--second-point needs --format pcap")
        sp = second_point(args.out, args.second_point)
        print(f"{args.second_point}: {sp['records']} packets, clock +{sp['shift_s']} s, "
              f"{sp['esp_dropped']} ESP packets lost between the points", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
