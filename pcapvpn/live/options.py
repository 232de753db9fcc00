"""The options of a ``pcapvpn live`` session (:class:`LiveOptions`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pcapvpn.thresholds import DEFAULT, Thresholds

__all__ = ["LiveOptions"]


@dataclass
class LiveOptions:
    interfaces: list
    #: ``-f``: a tcpdump expression added to (or, with ``replace_filter``, replacing) the default
    filter_expr: str | None = None
    replace_filter: bool = False
    ike_ports: tuple = ()
    thresholds: Thresholds = DEFAULT
    expect_peers: list = field(default_factory=list)
    backend: str = "afpacket"
    buffer_mb: int = 64
    promisc: bool = True
    #: --write DIR: rotating pcapng files of ``write_size`` bytes, at most ``write_files`` kept
    write_dir: str | None = None
    write_size: int = 100 * 1024 * 1024
    write_files: int = 10
    #: SAs (and keepalive flows, ICMP errors ...) silent this long are forgotten (seconds)
    idle_expiry: float = 1800.0
    max_sas: int = 20000
    #: seconds between rule evaluations (longer when an evaluation costs more than 10 % of it)
    eval_interval: float = 1.0
    #: seconds between status events in the jsonl stream (0: none)
    status_interval: float = 60.0
    #: stop by itself after this many seconds (None: until SIGINT/SIGTERM)
    duration: float | None = None
    #: SSL-VPN gateways (``analyze --vpn-server``): ``(packed address, port or None)``
    vpn_servers: list = field(default_factory=list)
    #: decryption keys (``analyze --keys``): a pcapvpn.decrypt.keys.KeyStore or None
    keys: object = None
    #: --log FILE: gateway logs followed as they grow (pcapvpn.logsrc), and --log-tz
    logs: list = field(default_factory=list)
    log_tz: object = None
    #: bounds of what is kept (pcapvpn.limits.Limits; None: the defaults)
    limits: object = None
    #: --vantage NAME=IFACE: the point each interface of ``interfaces`` is (same length; None:
    #: every interface is one capture point, as without --vantage).  The first point's
    #: interfaces are the one the events and the report are of; the others are matched with it
    #: (pcapvpn.track.vantage): clock offsets, PATH_LOSS and locations
    points: list | None = None
    #: read ring blocks into the batched ESP classification (pcapvpn.live.batch); False: one
    #: frame at a time (the tests compare both)
    batch: bool = True
    #: --report-within S: the final report comes at most this many seconds after the stop
    #: (signal or ``duration``); when the final rules over what is held are not done by then,
    #: the report is the last evaluation's, stamped with its time (pcapvpn.live.finish).
    #: 0: the final rules always run to their end
    report_within: float = 2.0
    #: --workers N: capture processes, one PACKET_FANOUT group per interface
    #: (pcapvpn.live.workers); 1: this process alone
    workers: int = 1
