"""``pcapvpn live``: a ``TPACKET_V3`` block as one batch for the numpy ESP classification.

:class:`pcapvpn.live.capture.AfPacketRing` hands a block of the ring over as frames, one tuple
and one ``bytes`` per packet, which the decoder then looks at one at a time.  On a mirror port
nearly every packet is ESP, and that per-packet Python work is what limits live mode.  Here a
block is handled as the offline batched walk handles a chunk of a pcap file
(:meth:`dissect.vpn.capture.PcapReader.walk` with ``on_batch``):

* the block is copied into a reused buffer (with the slack :func:`dissect.vpn.batch.classify`
  reads past the last packet); the packet chain (``tp_next_offset``) is walked for the packets'
  offsets, nothing else per packet;
* their ``struct tpacket3_hdr`` fields are read with numpy; each packet's captured and original
  lengths are written into the 8 bytes before its frame (padding after ``struct sockaddr_ll``
  that nobody reads), so that every frame is preceded by the same 16-byte layout as a pcap
  record (timestamp, captured length, original length) and the timestamps are passed in, as the
  pcapng walk does;
* :func:`dissect.vpn.batch.classify` recognises the ESP of the common shapes and the inert
  records, and the offline walk's own hand-over (``_Batcher.push``) delivers the ESP as
  ``EspBatch`` objects to the decoder's sink (``esp_batch``) and every other packet, in ring
  order, to the decoder's general path, so each SA sees its packets in capture order.

The events are the ones :meth:`pcapvpn.decode.Decoder.run` makes from the same frames
(``tests/live/test_live_fanout.py`` compares both on the same ring contents).  A packet whose 802.1Q
tag the NIC took out (``TP_STATUS_VLAN_VALID``) is classified without it (the ESP event is the
same: the decoder peels tags) and gets it back where its bytes are handed on (general path,
``--write``), as :meth:`AfPacketRing.read` does.

Not batched (the per-packet :meth:`AfPacketRing.read`): rings whose frames are not Ethernet
(``-i any``, tunnel interfaces: raw IP), and ``--keys`` in one process (the ESP bytes of keyed
SAs are needed).  A worker of ``live --workers`` (:mod:`pcapvpn.live.workers`) reads its rings
here with ``--keys`` too: ``keyed`` names the SPIs whose packets must not be tracked as a batch;
they are handed over as frames, in ring order, to the general path (:func:`reroute`).
"""

from __future__ import annotations

import struct

from dissect.vpn import batch as _vec
from dissect.vpn.capture.batcher import _Batcher
from dissect.vpn.link import LINKTYPE_ETHERNET

from pcapvpn.live.capture import (TP_STATUS_COPY, TP_STATUS_KERNEL, TP_STATUS_USER,
                                  TP_STATUS_VLAN_TPID_VALID, TP_STATUS_VLAN_VALID, AfPacketRing)

__all__ = ["ALL_SPIS", "BlockReader", "batchable", "reroute"]

np = _vec.np

_BLOCK = struct.Struct("=IIIIII")  # version, offset_to_priv, status, num_pkts, first, blk_len
_U32 = struct.Struct("=I")
#: bytes before the block in the buffer (>= dissect.vpn.batch.LEAD; keeps 8-byte alignment)
_LEAD = 8


#: ``keyed`` of :class:`BlockReader` when every SPI is keyed (a key without an SPI)
ALL_SPIS = "all"


def batchable(cap) -> bool:
    """Whether ``cap`` can be read a block at a time into the batched classification."""
    return isinstance(cap, AfPacketRing) and cap.linktype == LINKTYPE_ETHERNET


class _Push(_Batcher):
    """The offline walk's hand-over of a classified run (``_Batcher.push``) over a ring block:
    no stream, no checkpoints, no TCP lane (live mode follows every TCP stream itself)."""

    def __init__(self, on_batch, on_frame):  # no reader: the buffer is the block's
        self._hand_over(0, on_batch, on_frame, None, 1024)
        self.base = 0
        self.buf = bytearray(0)
        self.mv = memoryview(self.buf)


class BlockReader:
    """Reads the ready blocks of one :class:`AfPacketRing` into a decoder (or anything with the
    decoder's ``_general`` and a sink with ``esp_batch``), a block at a time.  ``keyed``: SPIs
    (a set of ints, or :data:`ALL_SPIS`) whose ESP goes to the general path as frames."""

    def __init__(self, ring: AfPacketRing, keyed=None):
        self.ring = ring
        self.keyed = (None if not keyed else keyed if keyed == ALL_SPIS
                      else np.array(sorted(keyed), dtype=np.int64))
        size = _LEAD + ring.block_size + _vec.SLACK
        self.buf = bytearray(size)
        self.mv = memoryview(self.buf)
        self.u8 = np.frombuffer(self.buf, dtype=np.uint8)
        self.u32 = np.frombuffer(self.buf, dtype="<u4")
        self.u16 = np.frombuffer(self.buf, dtype="<u2")
        self.w32 = self.mv.cast("I")
        self._ringmv = memoryview(ring.mm)
        self._decoder = None
        self._push = None
        self._vlan = None  # {frame number: (tpid, tci)} of the block being handed over

    def close(self) -> None:
        """Let go of the ring's memory (before :meth:`AfPacketRing.close`)."""
        self._ringmv.release()

    def _bind(self, decoder):
        """The hand-over to ``decoder``: ESP batches move its fragment clock, as in
        :meth:`pcapvpn.decode.Decoder.run_source`."""
        if decoder is self._decoder:
            return self._push
        sink_batch = decoder.sink.esp_batch
        general = decoder._general

        def on_batch(tag, b):
            last = float(b.ts.max())
            if last > decoder._clock:
                decoder._clock = last
            sink_batch(tag, b)

        def on_frame(tag, number, ts, lt, data, wirelen, off, iface):
            vlan = self._vlan
            if vlan is not None and number in vlan:
                data, wirelen = _tagged(data, wirelen, vlan[number])
            general(tag, number, ts, lt, data, wirelen, off, iface)

        self._decoder = decoder
        self._push = _Push(on_batch, on_frame)
        self._push.buf = self.buf
        self._push.mv = self.mv
        return self._push

    def feed(self, decoder, fidx: int, num: int, max_blocks: int = 4, write=None):
        """Hand the packets of up to ``max_blocks`` ready blocks to ``decoder`` (file index
        ``fidx``, numbered from ``num + 1``); ``write(frames)``: gets them as frames
        (:mod:`pcapvpn.sources` layout) first, when given.  Returns ``(count, first ts, last
        ts)`` (``(0, None, None)`` when no block was ready)."""
        ring = self.ring
        mm = ring.mm
        bs = ring.block_size
        nr = ring.block_nr
        push = self._bind(decoder)
        n = 0
        t_first = t_last = None
        for _ in range(max_blocks):
            base = ring.block * bs
            _v, _p, status, npkts, first, blen = _BLOCK.unpack_from(mm, base)
            if not status & TP_STATUS_USER:
                break
            if npkts:
                self.buf[_LEAD:_LEAD + blen] = self._ringmv[base:base + blen]
            _U32.pack_into(mm, base + 8, TP_STATUS_KERNEL)  # hand the block back at once
            ring.block = (ring.block + 1) % nr
            if not npkts:
                continue
            k, t0, t1 = self._block(push, decoder, fidx, num + n, npkts, first, write)
            n += k
            if t_first is None:
                t_first = t0
            t_last = t1
        return n, t_first, t_last

    def _block(self, push, decoder, fidx, num, npkts, first, write):
        # the packet chain: offsets only (struct tpacket3_hdr.tp_next_offset, 8-byte aligned)
        w32 = self.w32
        offs = [0] * npkts
        p = _LEAD + first
        for i in range(npkts):
            offs[i] = p
            p += w32[p >> 2]
        P = np.array(offs, dtype=np.int64)
        q = P >> 2
        u32 = self.u32
        sec = u32[q + 1]
        nsec = u32[q + 2]
        snap = u32[q + 3].astype(np.int64)
        wire = u32[q + 4].astype(np.int64)
        st = u32[q + 5]
        mac = self.u16[(P >> 1) + 12].astype(np.int64)
        # as AfPacketRing.read: sec + nsec * 1e-9 in double precision
        ts = sec.astype(np.float64) + nsec.astype(np.float64) * 1e-9
        o = P + mac - 16  # the "record" before each frame: ..., caplen at +8, wirelen at +12
        u8 = self.u8
        lens = np.empty((npkts, 2), dtype="<u4")
        lens[:, 0] = snap
        lens[:, 1] = wire
        idx = (o + 8)[:, None] + np.arange(8)
        u8[idx] = lens.view(np.uint8).reshape(npkts, 8)
        ring = self.ring
        flags = st & (TP_STATUS_VLAN_VALID | TP_STATUS_COPY)
        self._vlan = None
        if flags.any():
            ring.truncated += int(np.count_nonzero(st & TP_STATUS_COPY))
            vv = np.flatnonzero(st & TP_STATUS_VLAN_VALID)
            if len(vv):
                tci = self.u16[(P[vv] >> 1) + 16].tolist()  # hv1.tp_vlan_tci (offset 32)
                tpid = self.u16[(P[vv] >> 1) + 18].tolist()  # hv1.tp_vlan_tpid (offset 36)
                stv = st[vv].tolist()
                self._vlan = {num + int(i) + 1: ((tp if s & TP_STATUS_VLAN_TPID_VALID and tp
                                                  else 0x8100), tc & 0xFFFF)
                              for i, tc, tp, s in zip(vv.tolist(), tci, tpid, stv)}
        if write is not None:
            self._write(write, fidx, num, o, ts, snap, wire)
        res = _vec.classify(self.buf, o, "<", True, num, ts=ts, linktype=LINKTYPE_ETHERNET)
        if self.keyed is not None:
            res = reroute(res, self.keyed)
        push.tag = fidx
        push.number = num
        push.push(o, 16, res, LINKTYPE_ETHERNET)
        self._vlan = None
        nbytes = int(snap.sum())
        ring.packets += npkts
        ring.bytes += nbytes
        decoder.frames += npkts
        decoder.truncated += int(np.count_nonzero(wire > snap))
        return npkts, float(ts[0]), float(ts[-1])

    def _write(self, write, fidx, num, o, ts, snap, wire):
        mv = self.mv
        vlan = self._vlan
        frames = []
        app = frames.append
        lt = LINKTYPE_ETHERNET
        for i, (a, t, c, w) in enumerate(zip((o + 16).tolist(), ts.tolist(), snap.tolist(),
                                             wire.tolist()), num + 1):
            data = bytes(mv[a:a + c])
            if vlan is not None and i in vlan:
                data, w = _tagged(data, w, vlan[i])
            app((fidx, i, t, lt, data, w, 0))
        write(frames)


def reroute(res, keyed):
    """The classification ``res`` (:func:`dissect.vpn.batch.classify`) with the ESP of the SPIs
    ``keyed`` (an int64 array, or :data:`ALL_SPIS`) moved out of the batches into the records
    handed over one at a time (not inert: they make ESP events), in their ring order."""
    ts, cap, wire, other, inert, b4, b6 = res
    moved = []
    out = []
    for b in (b4, b6):
        if b is None:
            out.append(None)
            continue
        batch, idx = b
        m = (np.ones(len(idx), dtype=bool) if isinstance(keyed, str)
             else np.isin(batch.spi, keyed))
        if not m.any():
            out.append(b)
            continue
        moved.append(idx[m])
        keep = np.flatnonzero(~m)
        out.append((batch.take(keep), idx[keep]) if len(keep) else None)
    if not moved:
        return res
    rows = np.concatenate([np.asarray(other, dtype=np.int64)] + moved)
    quiet = np.concatenate([np.asarray(inert, dtype=bool),
                            np.zeros(len(rows) - len(other), dtype=bool)])
    order = np.argsort(rows, kind="stable")
    return ts, cap, wire, rows[order], quiet[order], out[0], out[1]


def _tagged(data: bytes, wirelen: int, tag) -> tuple:
    """The frame with the 802.1Q tag the NIC took out put back (as libpcap does)."""
    tpid, tci = tag
    return data[:12] + struct.pack("!HH", tpid, tci) + data[12:], wirelen + 4
