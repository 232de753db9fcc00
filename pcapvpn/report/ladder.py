"""Ladder (sequence) diagram of one IKE SA: layout shared by the HTML SVG and the Markdown text.

``layout(sa)`` turns an ``ike_sas`` dict of the model into a :class:`Ladder`: the two peers as
columns (the IKE SA's initiator on the left), one :class:`Row` per message in capture order with
its exchange, message ID, size, key payloads, notifies, vendor IDs and cleartext identities;
retransmissions and capture duplicates are rows of their own (a repeated arrow); every copy of a
request that was never answered ends in a cross, one the capture ended too soon to judge (the
exchange's ``status`` is ``pending``) ends in "capture ended" instead; the NAT-T move to UDP 4500
is a row; times are
seconds from the SA's first message.  Very long SAs keep their first and last rows and summarise
the middle in one ``elided`` row.

``text(ladder)`` draws it in ASCII for a fenced code block (survives pasting into a ticket).
Layout only: nothing here decides what is wrong; the rows cited by findings carry their codes.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass, field

from dissect.vpn.ike import FLAG_V2_INITIATOR
from dissect.vpn.ip import Port
from pcapvpn.findings import Msg, msg, msg_join
from pcapvpn.i18n import close_marks
from pcapvpn.report.escape import printable

#: payloads not listed among the "key payloads" of a message (shown otherwise or noise)
_QUIET_PAYLOADS = {"N", "V", "VID", "Notification", "Vendor ID"}


@dataclass
class Peer:
    address: str
    ports: list = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.address + (" (UDP " + ", ".join(str(p) for p in self.ports) + ")"
                               if self.ports else "")


@dataclass
class Row:
    kind: str                       # "msg", "float" (NAT-T move to 4500), "log" or "elided"
    t: float = 0.0                  # seconds from the SA's first message
    dt: float | None = None         # seconds since the previous message row
    rightward: bool = True          # left peer (initiator) -> right peer
    exchange: str = ""
    msgid: int | None = None
    size: int = 0
    response: bool | None = None
    step: str | None = None
    payloads: str = ""              # key payloads, e.g. "SA KE No" or "SK{IDi}"
    notifies: list = field(default_factory=list)
    vendor_ids: list = field(default_factory=list)
    identities: list = field(default_factory=list)
    copy: str | None = None         # "retransmission" | "duplicate"
    copy_n: int = 0                 # 1 for the first retransmission of a message, ...
    unanswered: bool = False        # a request (copy) that no response answered: ends in a cross
    pending: bool = False           # no response, but the capture ended before one was due
    frames: list = field(default_factory=list)  # frame numbers
    src: str = ""
    dst: str = ""
    port_float: bool = False        # first message on UDP 4500 after UDP 500
    codes: list = field(default_factory=list)   # finding codes citing this message's frames
    text: str = ""                  # "float" / "elided" / "log" rows: what to say
    source: str = ""                # "log" rows: file:line
    agrees: bool = True             # "log" rows: false where the line contradicts a finding

    @property
    def label(self) -> str:
        """Short arrow label: exchange, message ID, request/response, copy, size."""
        if self.kind != "msg":
            return self.text
        what = "resp" if self.response else ("req" if self.response is False else
                                             (self.step or "msg"))
        s = f"{self.exchange} #{self.msgid} {what}"
        if self.copy == "retransmission":
            s += f" retx {self.copy_n}"
        elif self.copy == "duplicate":
            s += " dup"
        return f"{s} {self.size} B"

    @property
    def details(self) -> str:
        """Key payloads and notifies (plus vendor IDs / identities): the second line, a message
        whose facts are the protocol's names and the capture's values (a language translates
        only the tool's words around them: "(encrypted)")."""
        parts: list = []
        if self.payloads:
            parts.append(self.payloads if isinstance(self.payloads, Msg)
                         else msg("{payloads}", payloads=self.payloads))
        if self.notifies:
            parts.append(msg("N({notifies})", notifies=", ".join(self.notifies)))
        if self.identities:
            parts.append(msg("ID: {identities}", identities="; ".join(self.identities)))
        if self.vendor_ids:
            parts.append(msg("V: {vendor_ids}", vendor_ids=", ".join(self.vendor_ids)))
        return msg_join(" ", parts)


@dataclass
class Ladder:
    sa_id: str
    version: int
    left: Peer
    right: Peer
    rows: list
    start_utc: str | None = None
    established: bool | None = None
    rekey_of: str | None = None
    retry_of: str | None = None
    messages: int = 0
    exchanges: int = 0
    retransmissions: int = 0
    unanswered: int = 0


def _host(ep: str) -> tuple[str, int | None]:
    """'192.0.2.1:500' / '[2001:db8::1]:500' / '2001:db8::1:500' -> (address, port)."""
    if ep.startswith("["):
        a, _, p = ep[1:].partition("]:")
        return a, int(p) if p.isascii() and p.isdigit() else None
    a, _, p = ep.rpartition(":")
    if not a:
        return ep, None
    return a, int(p) if p.isascii() and p.isdigit() else None


def _payload_text(m: dict) -> str:
    out = []
    counts = Counter()
    for p in m.get("payloads") or ():
        if p in _QUIET_PAYLOADS:
            continue
        counts[p] += 1
        if counts[p] == 1:
            out.append(p)
    txt = []
    for p in out:
        name = p + (f"x{counts[p]}" if counts[p] > 1 else "")
        if p in ("SK", "SKF", "E") and m.get("sk_first_payload"):
            name += "{" + str(m["sk_first_payload"]) + "}"
        if p == "SKF" and m.get("skf"):
            name += f" {m['skf'][0]}/{m['skf'][1]}"
        txt.append(name)
    if m.get("encrypted") and not any(p in ("SK", "SKF") for p in out) and m.get("version") == 1:
        # the payload names are the protocol's; "(encrypted)" is the tool's word
        return msg("{payloads} (encrypted)", payloads=" ".join(txt)) if txt \
            else msg("(encrypted)")
    return " ".join(txt)


#: log event kinds drawn on a ladder (the packets themselves are the arrows)
LADDER_LOG_KINDS = frozenset({
    "ike_init", "ike_peer_init", "ike_retransmit", "ike_established", "child_established",
    "delete_sent", "delete_recv", "ike_rekey", "give_up", "no_proposal", "invalid_ke",
    "auth_failed", "auth_suspected", "ts_unacceptable", "child_failed", "cookie", "nat_detected",
    "nat_faked", "fragment", "dpd_timeout", "dpd_request", "peer_restart", "invalid_spi",
    "esp_error", "aggressive_mode", "cert_failed", "tunnel_down", "tunnel_up"})
#: log rows per ladder at most
MAX_LOG_ROWS = 40


def log_rows(sa: dict, log_events, log_sources) -> list[dict]:
    """The ``log_events`` of the report tied to this IKE SA, with the side of the ladder their
    gateway is on (``host`` of their ``log_sources`` entry: its address as the capture shows
    it)."""
    hosts = {s["file"]: s.get("host") for s in log_sources or ()}
    out = []
    for e in log_events or ():
        if e.get("ike_sa") != sa.get("id") or e.get("kind") not in LADDER_LOG_KINDS or \
                not e.get("time"):
            continue
        out.append({**e, "host": hosts.get(e["file"])})
        if len(out) >= MAX_LOG_ROWS:
            break
    return out


def layout(sa: dict, marks: dict | None = None, max_rows: int = 80, logs=None) -> Ladder:
    """The ladder of one ``ike_sas`` dict.  ``marks``: {(file, frame): [finding codes]};
    ``logs``: gateway log events to draw on it (:func:`log_rows`)."""
    msgs = sa.get("messages") or []
    marks = marks or {}
    init = sa.get("initiator") or {}
    resp = sa.get("responder") or {}
    left_addr = init.get("address")
    right_addr = resp.get("address")
    if not left_addr and msgs:
        left_addr = _host(msgs[0]["src"])[0]
    if not right_addr and msgs:
        right_addr = _host(msgs[0]["dst"])[0]
    left = Peer(left_addr or "?")
    right = Peer(right_addr or "?")

    unanswered = set()
    pending = set()
    byn = {m["n"]: m for m in msgs}
    for x in sa.get("exchanges") or ():
        if x.get("answered") or x.get("status") == "answered":
            continue
        ns = x.get("messages") or []
        xm = [byn[n] for n in ns if n in byn]
        # the rules' judgement (model field "status"): too soon to tell is not "no response"
        into = pending if x.get("status") == "pending" else unanswered
        if sa.get("version") == 2:
            into.update(m["n"] for m in xm if not m.get("response"))
        elif xm:
            # IKEv1: the last message sent (and its copies) got nothing back
            last = xm[-1]
            orig = last.get("retransmission_of") or last.get("duplicate_of") or last["n"]
            into.update(m["n"] for m in xm
                        if m["n"] == orig or m.get("retransmission_of") == orig
                        or m.get("duplicate_of") == orig)

    nat = sa.get("nat") or {}
    float_frame = nat.get("float_frame") if nat.get("floated") else None
    t0 = msgs[0]["time"]["rel"] if msgs else 0.0
    rows: list[Row] = []
    copies = Counter()
    prev_t = None
    seen_500 = False
    floated = False
    for m in msgs:
        src_a, src_p = _host(m["src"])
        dst_a, dst_p = _host(m["dst"])
        if src_a == left.address:
            rightward = True
        elif dst_a == left.address:
            rightward = False
        elif m.get("flags") is not None and sa.get("version") == 2:
            rightward = bool(m["flags"] & FLAG_V2_INITIATOR)
        else:
            rightward = src_a != right.address
        lp, rp = (src_p, dst_p) if rightward else (dst_p, src_p)
        for peer, p in ((left, lp), (right, rp)):
            if p is not None and p not in peer.ports:
                peer.ports.append(p)
        on_4500 = Port.NAT_T in (src_p, dst_p)
        if m.get("transport") == "udp" and not on_4500:
            seen_500 = True
        is_float = False
        if not floated and on_4500 and (seen_500 or float_frame is not None):
            hit = float_frame is None or any(f == float_frame for f in m.get("frames") or ())
            if hit or seen_500:
                is_float = True
                floated = True
                t = m["time"]["rel"] - t0
                rows.append(Row("float", t=t, rightward=rightward,
                                text=(msg("NAT-T: IKE moves to UDP 4500") if seen_500
                                      else msg("NAT-T: IKE starts to UDP 4500"))
                                     + (msg(" (frame {frame})", frame=m['frames'][0]['frame'])
                                        if m.get("frames") else "")))
        copy = None
        copy_n = 0
        if m.get("retransmission_of") is not None:
            copy = "retransmission"
            copies[m["retransmission_of"]] += 1
            copy_n = copies[m["retransmission_of"]]
        elif m.get("duplicate_of") is not None:
            copy = "duplicate"
        t = m["time"]["rel"] - t0
        frames = m.get("frames") or []
        codes = []
        for f in frames:
            for c in marks.get((f["file"], f["frame"]), ()):
                if c not in codes:
                    codes.append(c)
        rows.append(Row(
            "msg", t=t, dt=None if prev_t is None else t - prev_t, rightward=rightward,
            exchange=m.get("exchange") or "?", msgid=m.get("message_id"),
            size=m.get("size") or m.get("length") or 0, response=m.get("response"),
            step=m.get("step"), payloads=_payload_text({**m, "version": sa.get("version")}),
            notifies=list(m.get("notifies") or ()), vendor_ids=list(m.get("vendor_ids") or ()),
            identities=list(m.get("identities") or ()), copy=copy, copy_n=copy_n,
            unanswered=m["n"] in unanswered, pending=m["n"] in pending,
            frames=[f["frame"] for f in frames],
            src=m["src"], dst=m["dst"], port_float=is_float, codes=codes))
        prev_t = t

    if logs:
        rows = _with_logs(rows, logs, t0, left.address)
    if len(rows) > max_rows:
        head = max_rows * 3 // 4
        tail = max_rows - head - 1
        middle = rows[head:len(rows) - tail]
        kinds = Counter(r.exchange for r in middle if r.kind == "msg")
        summary = ", ".join(f"{k} x{v}" for k, v in kinds.most_common(4))
        n = sum(1 for r in middle if r.kind == "msg")
        span = (middle[0].t, middle[-1].t)
        rows = rows[:head] + [Row("elided", t=span[0], text=msg("... {n} messages not drawn "
                                                                 "({summary}) from {t0:.3f} to "
                                                                 "{t1:.3f} s ...", n=n,
                                                                 summary=summary, t0=span[0],
                                                                 t1=span[1]))] \
            + rows[len(rows) - tail:]
    ladder = Ladder(
        sa_id=sa.get("id", "?"), version=sa.get("version") or 0, left=left, right=right, rows=rows,
        start_utc=msgs[0]["time"]["utc"] if msgs else None, established=sa.get("established"),
        rekey_of=sa.get("rekey_of"), retry_of=sa.get("retry_of"), messages=len(msgs),
        exchanges=len(sa.get("exchanges") or ()),
        retransmissions=sum(1 for m in msgs if m.get("retransmission_of") is not None),
        unanswered=sum(1 for x in sa.get("exchanges") or ()
                       if not x.get("answered") and x.get("status") != "pending"))
    return ladder


def _with_logs(rows: list, logs, t0: float, left_addr: str) -> list:
    """Insert a row per log event, in time order among the message rows."""
    import bisect

    out = list(rows)
    for e in sorted(logs, key=lambda e: e["time"]["rel"]):
        t = e["time"]["rel"] - t0
        name = e["file"].rsplit("/", 1)[-1]
        row = Row("log", t=t, rightward=e.get("host") != left_addr if e.get("host") else True,
                  text=msg("{kind}: {text}", kind=e['kind'], text=_clip(
                      ' '.join(str(e.get('message') or e.get('text', '')).split()), 160)),
                  source=f"{name}:{e['line']}", agrees=not e.get("contradicts"))
        i = bisect.bisect_right([r.t for r in out], t)
        out.insert(i, row)
    return out


def finding_marks(findings) -> dict:
    """{(file, frame): [codes]} of the frames the findings cite (failures first)."""
    out: dict = {}
    for f in sorted(findings, key=lambda f: (f.posture, not f.failure)):
        for fr in f.evidence.frames:
            lst = out.setdefault((fr.file, fr.frame), [])
            if f.code not in lst:
                lst.append(f.code)
    return out


# -- ASCII ------------------------------------------------------------------------------------

def _clip(s: str, n: int) -> str:
    return s if len(s) <= n else close_marks(s[:max(0, n - 3)]) + "..."


def _cols(s: str) -> int:
    """Terminal columns of ``s`` (East Asian wide and full-width characters take two)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def _clip_cols(s: str, n: int) -> str:
    """``s`` cut to ``n`` columns (a wide character counts two), ending in "..." when cut."""
    if _cols(s) <= n:
        return s
    out, w = [], 0
    for c in s:
        w += _cols(c)
        if w > n - 3:
            break
        out.append(c)
    return close_marks("".join(out)) + "..."


def text(ladder: Ladder, lane: int = 46, details: int = 100, L=None) -> str:
    """ASCII ladder: one line per row, ``lane`` characters between the two lifelines, the key
    payloads / notifies after the right lifeline (clipped to ``details`` characters).  ``L``:
    the report's :class:`pcapvpn.i18n.Lang` (the tool's words translated, the protocol's names
    and the capture's values as they are; columns counted for wide characters)."""
    if L is None:
        from pcapvpn.i18n import Lang

        L = Lang("en")
    clip, cols = (_clip, len) if L.english else (_clip_cols, _cols)

    def center(s: str, width: int, fill: str) -> str:
        if L.english:
            return s.center(width, fill)
        pad = max(0, width - cols(s))
        return fill * (pad // 2) + s + fill * (pad - pad // 2)

    out = []
    hdr_l = clip(printable(ladder.left.label), lane)
    t_s = L._("t (s)")
    out.append(f"{' ' * max(0, 9 - cols(t_s))}{t_s}  {'+dt':>7}  {hdr_l}{' ' * max(0, lane + 2 - cols(hdr_l))}"
               f"{clip(printable(ladder.right.label), 40)}")
    out.append(f"{'':>9}  {'':>7}  |{' ' * lane}|")
    for r in ladder.rows:
        t = f"{r.t:9.3f}"
        if r.kind == "elided":
            text = printable(L.msg(r.text))
            out.append(f"{'':>9}  {'':>7}  |{center(clip(text, lane), lane, ' ')}|")
            out.append(f"{'':>9}  {'':>7}  |{' ' * lane}|  {clip(text, details)}"
                       if cols(text) > lane else f"{'':>9}  {'':>7}  |{' ' * lane}|")
            continue
        if r.kind == "log":
            tag = f"[{r.source}{'' if r.agrees else ' ' + L._('CONTRADICTS')}]"
            mark = "<log" if r.rightward else "log>"
            bar = (" " * (lane - 4) + mark) if r.rightward else (mark + " " * (lane - 4))
            out.append(f"{t}  {'':>7}  |{bar}|  "
                       f"{clip(printable(tag + ' ' + L.msg(r.text)), details)}")
            continue
        if r.kind == "float":
            lbl = " NAT-T 500 -> 4500 "
            out.append(f"{t}  {'':>7}  |{lbl.center(lane, '=')}|  "
                       f"{clip(printable(L.msg(r.text)), details)}")
            continue
        dt = f"+{r.dt:.3f}" if r.dt is not None else ""
        fill = "~" if r.copy == "retransmission" else ("." if r.copy == "duplicate" else "-")
        label = f" {_clip(printable(r.label), lane - 8)} "
        if r.rightward:
            head = "X  " if r.unanswered else ("|  " if r.pending else ">")
            body = fill * 2 + label
            arrow = body + fill * max(1, lane - len(body) - len(head)) + head
        else:
            head = "  X" if r.unanswered else ("  |" if r.pending else "<")
            body = label + fill * 2
            arrow = head + fill * max(1, lane - len(body) - len(head)) + body
        arrow = arrow[:lane]
        extra = L.msg(r.details)
        if r.unanswered:
            extra = L._("NO RESPONSE") + "  " + extra
        elif r.pending:
            extra = L._("capture ended") + "  " + extra
        if r.codes:
            extra = "[" + ",".join(r.codes) + "] " + extra
        frames = ",".join(str(f) for f in r.frames)
        extra = printable(extra)
        out.append(f"{t}  {dt:>7}  |{arrow}|  "
                   f"{clip(L.fmt('fr {frames}:', frames=frames) + ' ' + extra, details)}")
    out.append(f"{'':>9}  {'':>7}  |{' ' * lane}|")
    legend = "   ".join(f"{sym} {word}" for sym, word in (
        ("-->", L._("message")), ("~~>", L._("retransmission")),
        ("..>", L._("capture duplicate")), ("--X", L._("no response")),
        ("--|", L._("capture ended")), ("===", L._("NAT-T float"))))
    if any(r.kind == "log" for r in ladder.rows):
        legend += f"   log> {L._('gateway log line')}"
    out.append(f"{'':>9}  {'':>7}  {legend}")
    return "\n".join(out)
