"""Traffic classification counters: the capture summary's view of the decode events."""

from __future__ import annotations

from collections import Counter

from pcapvpn.decode import NullSink

#: decode errors kept with their frame numbers (all are counted by reason).
MAX_ERROR_SAMPLES = 1000


class CountingSink(NullSink):
    """Counts VPN events by class; keeps the first decode errors with their frames."""

    def __init__(self):
        self.ike_udp = 0
        self.ike_tcp = 0
        self.ike_on_4500 = 0
        self.esp_ip = 0
        self.esp_udp = 0
        self.esp_in_tcp = 0
        self.ah = 0
        self.keepalives = 0
        self.icmp_errors = 0
        self.tcp_segments = 0
        self.incomplete_fragment_sets = []  # (first_ts, frames)
        self.error_samples = []  # (ref, reason)
        self.errors = Counter()

    def ike(self, ref, ts, ipver, src, dst, sport, dport, transport, msg, frames):
        if transport == "tcp":
            self.ike_tcp += 1
        else:
            self.ike_udp += 1
            if sport == 4500 or dport == 4500:
                self.ike_on_4500 += 1

    def esp(self, ref, ts, ipver, src, dst, sport, dport, spi, seq, length):
        if sport < 0:
            self.esp_ip += 1
        else:
            self.esp_udp += 1

    def esp_tcp(self, ref, ts, ipver, src, dst, sport, dport, spi, seq, length):
        self.esp_in_tcp += 1

    def ah(self, ref, ts, ipver, src, dst, spi, seq, length):
        self.ah += 1

    def keepalive(self, ref, ts, ipver, src, dst, sport, dport):
        self.keepalives += 1

    def icmp_error(self, ref, ts, ipver, src, dst, icmp_type, icmp_code, mtu, quoted):
        self.icmp_errors += 1

    def fragments_incomplete(self, first_ts, ipver, src, dst, proto, ident, frames, first):
        if len(self.incomplete_fragment_sets) < MAX_ERROR_SAMPLES:
            self.incomplete_fragment_sets.append((first_ts, frames))

    def decode_error(self, ref, reason):
        self.errors[reason] += 1
        if len(self.error_samples) < MAX_ERROR_SAMPLES:
            self.error_samples.append((ref, reason))
