"""Command line: ``pcapvpn analyze FILE...``.

Exit status: 0 success, 2 usage or input error (missing/unreadable file: a one-line message),
3 internal error (a short report, never a bare traceback).
"""

from __future__ import annotations

import os
import sys
import traceback

import click

from pcapvpn import __version__
from pcapvpn.findings import SEVERITIES

# numpy's bundled OpenBLAS starts a pool of threads when numpy is imported, and they spin now and
# then; pcapvpn does no linear algebra, so one thread will do (a setting of the user's own wins).
# Measured on the bench's 1M mix: 0.76 -> 0.70 CPU s for one process, and with --jobs the
# spinning threads no longer take a core from the workers.  Nothing above imports numpy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3


class _Group(click.Group):
    def main(self, *args, **kwargs):  # turn unexpected exceptions into exit 3 with a short report
        _LANG["lang"] = "en"  # until this command's --lang is read
        try:
            return super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.Abort:
            click.echo(_L()._("pcapvpn: aborted"), err=True)
            sys.exit(130)
        except click.ClickException as e:
            if _LANG["lang"] != "en" and isinstance(e, click.UsageError):
                _show_usage_error(e)
            else:
                e.show()
            sys.exit(e.exit_code)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except SystemExit:
            raise
        except BrokenPipeError:
            sys.exit(0)
        except Exception as e:  # noqa: BLE001 - the documented exit-3 path
            _internal_error(e)
            sys.exit(EXIT_INTERNAL)


#: the ``--lang`` of this command, the language of its lines on standard error too (read before
#: the other options, so that their errors are in it)
_LANG = {"lang": "en"}


def _set_lang(_ctx, _param, value):
    _LANG["lang"] = value or "en"
    return value


def _L():
    from pcapvpn.i18n import Lang

    return Lang(_LANG["lang"])


def _show_usage_error(e: click.UsageError) -> None:
    """A usage error in the language of ``--lang``: click's lines (usage, the help hint,
    "Error: ...") with their words translated; the usage line and the option names as they
    are."""
    import io
    import re

    from pcapvpn.findings import Term

    L = _L()
    buf = io.StringIO()
    e.show(file=buf)
    for line in buf.getvalue().splitlines():
        m = re.fullmatch(r"Usage: (.*)|Try '(.*)' for help\.|Error: (.*)", line)
        if m and m.group(1) is not None:
            line = L.fmt("Usage: {usage}", usage=m.group(1))
        elif m and m.group(2) is not None:
            line = L.fmt("Try '{command}' for help.", command=m.group(2))
        elif m:
            line = L.fmt("Error: {message}", message=Term(m.group(3)))
        click.echo(line, err=True)


def _internal_error(e: BaseException) -> None:
    from pcapvpn.report.escape import one_line

    L = _L()
    tb = traceback.extract_tb(e.__traceback__)
    where = L.fmt("{file}:{line} in {function}", file=tb[-1].filename, line=tb[-1].lineno,
                  function=tb[-1].name) if tb else "?"
    # the exception's own text is a value (quoted in a translation)
    click.echo(L.fmt("pcapvpn: internal error: {error}: {message}", error=type(e).__name__,
                     message=one_line(e, 500)), err=True)
    click.echo("  " + L.fmt("at {where}", where=where), err=True)
    click.echo("  " + L.fmt("This is a bug in pcapvpn. Please report it with the command line "
                            "and, if you can, the capture (set PCAPVPN_DEBUG=1 for the full "
                            "traceback)."), err=True)
    if os.environ.get("PCAPVPN_DEBUG"):
        traceback.print_exception(e)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pcapvpn")
def cli():
    """pcapvpn: find out why a VPN does not come up or keeps dropping, from a packet capture."""


_SEVERITIES = [s.value for s in SEVERITIES]  # click's choices: plain strings


def _error(message) -> None:
    """The one-line error of exit status 2 (file names and values shown, never acted on), in
    the language of ``--lang`` (a source's reason as the report's reasons are)."""
    from pcapvpn.findings import Term, msg
    from pcapvpn.report.escape import printable
    from pcapvpn.sources import SourceError

    said = msg("{path}: {reason}", path=message.path, reason=Term(message.reason)) \
        if isinstance(message, SourceError) else Term(str(message))
    click.echo(printable(_L().fmt("pcapvpn: error: {message}", message=said)), err=True)
    sys.exit(EXIT_USAGE)


def _name_values(option, given, base):
    """``OPTION NAME=VALUE`` items → ``base.with_overrides`` (exit 2: one line naming the item
    or the valid range)."""
    items = {}
    for o in given:
        k, eq, v = o.partition("=")
        if not eq:
            _error(f"{option} {o}: expected NAME=VALUE")
        items[k.strip()] = v.strip()
    try:
        return base.with_overrides(items)
    except ValueError as e:
        _error(f"{option} {e}")


def _thresholds(overrides):
    """``--set NAME=VALUE`` of analyze and live → Thresholds."""
    from pcapvpn.thresholds import DEFAULT

    return _name_values("--set", overrides, DEFAULT)


def _limits(items_given):
    """``--limit NAME=VALUE`` of analyze → pcapvpn.limits.Limits."""
    from pcapvpn.limits import Limits

    return _name_values("--limit", items_given, Limits())


def _keys(paths):
    """``--keys`` of analyze and live → KeyStore (exit 2: one line naming the file and line,
    never a key)."""
    from pcapvpn.decrypt.keyfile import KeyFileError, load_keys

    try:
        return load_keys(paths)
    except KeyFileError as e:
        _error(f"key file {e}")


def _parse_addr(value: str) -> bytes:
    import ipaddress

    try:
        return ipaddress.ip_address(value).packed
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an IPv4 or IPv6 address") from None


def _parse_server(value: str):
    """``ADDR``, ``ADDR:PORT`` or ``[IPv6]:PORT`` → (packed address, port or None)."""
    v = value.strip()
    port = None
    if v.startswith("["):
        host, _, rest = v[1:].partition("]")
        if rest:
            port = rest.lstrip(":")
    elif v.count(":") == 1:
        host, port = v.split(":")
    else:
        host = v
    if port is not None:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise click.BadParameter(f"{value!r}: the port must be 1..65535")
        port = int(port)
    return _parse_addr(host), port


def _parse_spi(value: str) -> int:
    v = value.lower().removeprefix("0x")
    try:
        n = int(v, 16)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a hexadecimal SPI") from None
    return n


def _report_options(f):
    """The report options of analyze and live (the final report of live honours them all)."""
    opts = [
        click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown", "html"]),
                     default="text", show_default=True,
                     help="Report format (html: one self-contained page with ladder diagrams)."),
        click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
                     default=None, help="Write the report to this file instead of standard "
                                        "output (one line on standard error says what it holds)."),
        click.option("--peer", "peers", multiple=True, metavar="ADDR",
                     help="Only report tunnels involving this gateway address (repeatable)."),
        click.option("--spi", "spis", multiple=True, metavar="SPI",
                     help="Only report tunnels carrying this ESP SPI or IKE SPI (hex; "
                          "repeatable)."),
        click.option("--min-severity", type=click.Choice(_SEVERITIES), default="info",
                     show_default=True, help="Hide findings below this severity."),
        click.option("--fail-on", type=click.Choice(_SEVERITIES), default="error",
                     show_default=True,
                     help="Exit with status 1 when a finding at or above this severity is "
                          "reported."),
        click.option("--expect-peer", "expect", multiple=True, metavar="ADDR",
                     help="A gateway that should appear: 'nothing was sent to or from it' "
                          "becomes a finding."),
        click.option("--set", "overrides", multiple=True, metavar="NAME=VALUE",
                     help="Override a threshold (see README 'Thresholds'), e.g. --set "
                          "response_timeout=20."),
        click.option("--vpn-server", "vpn_servers", multiple=True, metavar="ADDR[:PORT]",
                     help="An SSL-VPN gateway: its TLS (TCP 443 and the SSL-VPN ports, or PORT) "
                          "is analysed as a VPN (repeatable).  Other TLS servers are web "
                          "traffic."),
        click.option("--keys", "keys", multiple=True, metavar="PATH",
                     help="Decryption keys: a Wireshark ikev1_decryption_table / "
                          "ikev2_decryption_table / esp_sa file (as strongSwan's save-keys "
                          "writes them), or a directory holding them (repeatable)."),
        click.option("--lang", type=click.Choice(["en", "ja"]), default="en", show_default=True,
                     is_eager=True, callback=_set_lang,
                     help="Language of the report (text, markdown, html), of live's event "
                          "lines and of the messages on standard error; codes, filters and "
                          "JSON stay English."),
        click.option("--redact", is_flag=True, default=False,
                     help="Replace IP/MAC addresses (prefix-preserving), identities, file and "
                          "host names by consistent pseudonyms in every output, exported "
                          "evidence included."),
        click.option("--redact-key", type=click.Path(dir_okay=False), default=None,
                     metavar="FILE",
                     help="With --redact: the key of the pseudonyms (created with mode 0600 and "
                          "a random key when missing), so that captures redacted with the same "
                          "key can be compared.  Default: $PCAPVPN_REDACT_KEY (hex), else a "
                          "random key for this run."),
        click.option("--redact-map", type=click.Path(dir_okay=False, writable=True),
                     default=None, metavar="FILE",
                     help="With --redact: write the original -> pseudonym mapping here (for "
                          "your eyes only)."),
        click.option("--export-evidence", "evidence",
                     type=click.Path(dir_okay=False, writable=True), default=None,
                     metavar="FILE.pcapng",
                     help="Write the frames the findings cite (plus their IKE exchanges) to a "
                          "pcapng, each with a comment naming the finding."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _report_opts(*, fmt, output, peers, spis, min_severity, fail_on, lang, redact, redact_key,
                 redact_map, evidence, keys=(), store=None):
    """ReportOptions from the shared options (usage errors: exit 2)."""
    from pcapvpn.report.deliver import ReportOptions

    if (redact_map or redact_key) and not redact:
        raise click.UsageError(f"{'--redact-map' if redact_map else '--redact-key'} needs "
                               f"--redact")
    private = list(keys)
    if store is not None:
        private += list(store.files) + list(store.skipped)
    return ReportOptions(fmt=fmt, output=output, lang=lang, redact=redact, redact_key=redact_key,
                         redact_map=redact_map, evidence=evidence,
                         peers=[_parse_addr(a) for a in peers],
                         spis=[_parse_spi(s) for s in spis], min_severity=min_severity,
                         fail_on=fail_on, private_paths=private)


def _progress_printer():
    state = {"last": 0.0}

    def show(name, done, total):
        import time

        from pcapvpn.report.escape import printable

        now = time.monotonic()
        if now - state["last"] < 0.2 and done < total:
            return
        state["last"] = now
        pct = 100.0 * done / total if total else 0.0
        sys.stderr.write(f"\r{printable(name)}: {pct:5.1f}% ")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def _vantage(specs):
    """``--vantage NAME=FILE[#IFACE]`` (repeatable; one name may get several files: pieces of
    one point) → ``[(name, [paths], iface or None)]`` in the order the names first appear."""
    out: dict = {}
    for spec in specs:
        name, eq, rest = spec.partition("=")
        name = name.strip()
        if not eq or not name or not rest:
            raise click.UsageError(f"--vantage {spec}: expected NAME=FILE or NAME=FILE#IFACE")
        path, iface = rest, None
        if "#" in rest and not os.path.exists(rest):
            head, _, tail = rest.rpartition("#")
            if head and tail:
                path, iface = head, tail
        entry = out.setdefault(name, [name, [], iface])
        if entry[2] != iface:
            raise click.UsageError(f"--vantage {spec}: point {name} is given with two "
                                   f"interfaces (one point, one interface)")
        entry[1].append(path)
    if len(out) == 1:
        raise click.UsageError("--vantage needs at least two points (one point: give its files "
                               "as plain arguments)")
    return [tuple(e) for e in out.values()]


@cli.command()
@click.argument("files", nargs=-1, required=False, metavar="FILE...")
@_report_options
@click.option("--limit", "limit_items", multiple=True, metavar="NAME=VALUE",
              help="Change a bound of what the analysis keeps (see README 'Limits'), e.g. "
                   "--limit ike_max_sas=50000.")
@click.option("--log", "logs", multiple=True, metavar="FILE",
              help="Gateway evidence: a daemon log or status output (strongSwan, libreswan, "
                   "OpenVPN, Cisco, FortiGate, Palo Alto, Juniper, MikroTik, YAMAHA, "
                   "WireGuard, Windows; recognised by content), aligned to the capture's clock "
                   "and linked to the findings (repeatable).")
@click.option("--log-tz", default=None, metavar="ZONE",
              help="Time zone of --log time stamps that name none (UTC, +09:00, Asia/Tokyo); "
                   "default: read as UTC, a whole-hour offset is reported as a zone difference.")
@click.option("--vantage", "vantage", multiple=True, metavar="NAME=FILE[#IFACE]",
              help="A capture point of the same traffic (repeatable; at least two points; one "
                   "NAME may get several files: pieces of that point; #IFACE takes one "
                   "interface of a pcapng file, by name or number, #ifindex=N one interface "
                   "of a Linux -i any capture).  Packets are matched "
                   "across the points: clock offsets, where each loss happened, path facts.  "
                   "The first point is the report's clock.")
@click.option("--stop-after", type=click.Choice(["read", "decode", "dissect", "full"]),
              default="full",
              hidden=True, help="Benchmarks: stop after a pipeline stage.")
@click.option("--jobs", "-j", "jobs", type=click.IntRange(min=0), default=0, metavar="N",
              help="Worker processes that read big capture files (cut at record boundaries; "
                   "the report is the same as one process's).  A gzip file, or gzip on standard "
                   "input, is decompressed by this process, which hands slices of it to the "
                   "workers.  Default 0: the cores this process may use; 1: one process.  "
                   "Small captures, uncompressed standard input, gzip or standard input among "
                   "several files, files whose times overlap and --keys are read by one "
                   "process.")
@click.option("--dask", "dask", default=None, metavar="SCHEDULER",
              help="Read the slices of a big capture file on a Dask distributed cluster "
                   "(scheduler address, e.g. tcp://10.0.0.5:8786; the file must be readable at "
                   "the same path on its workers) instead of local worker processes; the "
                   "report is the same.  Needs the dask extra: pip install 'pcapvpn[dask]'.")
def analyze(files, fmt, output, peers, spis, min_severity, fail_on, expect, overrides, stop_after,
            keys, lang, redact, redact_key, redact_map, evidence, vpn_servers=(), logs=(),
            log_tz=None, limit_items=(), vantage=(), jobs=0, dask=None):
    """Analyse capture files (pcap, pcapng, gzip-compressed, '-' for stdin).

    Several files are pieces of one capture point and are merged by time; files of several
    capture points are named with --vantage.
    """
    from pcapvpn.analysis import Options, run
    from pcapvpn.report.deliver import DeliveryError, deliver, redactor_for
    from pcapvpn.sources import SourceError

    points = _vantage(vantage) if vantage else []
    if points and files:
        raise click.UsageError("give every file with --vantage NAME=FILE when --vantage is used")
    if not points and not files:
        raise click.UsageError("missing capture files (FILE... or --vantage NAME=FILE)")
    if points and stop_after != "full":
        raise click.UsageError("--vantage needs the full analysis")
    every = list(files) + [p for _n, ps, _i in points for p in ps]
    if every.count("-") > 1:
        raise click.UsageError("standard input ('-') can be given only once")
    thresholds = _thresholds(overrides)
    limits = _limits(limit_items) if limit_items else None
    if evidence and stop_after != "full":
        raise click.UsageError("--export-evidence needs the full analysis")
    options = Options(thresholds=thresholds, stop_after=stop_after, limits=limits,
                      expect_peers=[_parse_addr(a) for a in expect],
                      spool_stdin=bool(evidence),
                      vpn_servers=[_parse_server(s) for s in vpn_servers],
                      vantage=points, jobs=jobs)
    if keys:
        options.keys = _keys(keys)
    if dask:
        from pcapvpn.parallel import DaskPool

        try:
            options.workers = DaskPool(dask)
        except (RuntimeError, OSError, ValueError) as exc:
            raise click.UsageError(f"--dask {dask}: {exc}") from None
    if logs:
        options.logs = _open_logs(logs, log_tz)
    ro = _report_opts(fmt=fmt, output=output, peers=peers, spis=spis, min_severity=min_severity,
                      fail_on=fail_on, lang=lang, redact=redact, redact_key=redact_key,
                      redact_map=redact_map, evidence=evidence, keys=keys, store=options.keys)
    try:  # a redaction key that cannot be read or made: said before the analysis
        redactor = redactor_for(ro)
    except DeliveryError as e:
        _error(e)
    if sys.stderr.isatty() and output != "-":
        options.progress = _progress_printer()
    try:
        result = run(files, options)
    except SourceError as e:
        _error(e)
    color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    try:
        code = deliver(result, ro, color=color, redactor=redactor)
    except DeliveryError as e:
        _error(e)
    _end(code)


def _log_tz(value):
    """``--log-tz`` of analyze and live (exit 2: one line naming the value)."""
    from pcapvpn.logsrc import parse_tz

    try:
        return parse_tz(value)
    except ValueError as e:
        _error(f"--log-tz: {e}")


def _check_metrics(spec: str) -> None:
    """--metrics: a usable address and the extra installed, said before capturing (exit 2)."""
    from pcapvpn.metrics import MetricsError, parse_listen, require

    try:
        parse_listen(spec)
        require()
    except MetricsError as e:
        _error(e)


def _open_logs(paths, log_tz):
    """--log / --log-tz → LogSource objects (a bad zone or an unreadable file: exit 2)."""
    from pcapvpn.logsrc import LogSourceError, open_logs

    tz = _log_tz(log_tz)
    try:
        return open_logs(paths, tz)
    except LogSourceError as e:
        _error(e)


@cli.command()
@click.option("-i", "--interface", "interfaces", multiple=True, metavar="IFACE",
              help="Capture on this interface (repeatable; 'any' = all, as raw IP).")
@click.option("--vantage", "vantage", multiple=True, metavar="NAME=IFACE",
              help="Capture on IFACE as the capture point NAME (repeatable; at least two "
                   "points; one NAME may get several interfaces).  Packets are matched across "
                   "the points: clock offsets, where each loss happened (PATH_LOSS).  The first "
                   "point is the one the events and the report are of.")
@click.option("-f", "--filter", "filter_expr", default=None, metavar="BPF",
              help="tcpdump filter expression added to the default VPN filter "
                   "(with --replace-filter: used instead of it).")
@click.option("--replace-filter", is_flag=True, help="-f replaces the default filter.")
@click.option("--ike-port", "ike_ports", multiple=True, type=click.IntRange(1, 65535),
              metavar="PORT", help="Also capture IKE on this UDP port (repeatable).")
@click.option("--print-filter", is_flag=True, help="Print the capture filter and exit.")
@click.option("--events", type=click.Choice(["text", "jsonl", "none"]), default="text",
              show_default=True, help="Event stream on standard output (raised / resolved).")
@click.option("--syslog", is_flag=True, help="Copy events to the local syslog socket (/dev/log).")
@click.option("--syslog-socket", default=None, hidden=True, help="Tests: another syslog socket.")
@click.option("--exec", "exec_cmd", default=None, metavar="CMD",
              help="Run CMD (no shell) per event; the event is on its stdin as JSON and in "
                   "PCAPVPN_* environment variables.")
@click.option("-q", "--quiet", is_flag=True, help="No status view on the terminal.")
@click.option("--write", "write_dir", default=None, metavar="DIR",
              help="Keep the captured packets in rotating pcapng files in DIR.")
@click.option("--write-size", "write_size_mb", type=click.FloatRange(0.01), default=100.0,
              show_default=True, metavar="MB", help="Size of each --write file.")
@click.option("--write-files", type=click.IntRange(0), default=10, show_default=True,
              metavar="N", help="--write files kept (oldest deleted; 0 = all).")
@click.option("--idle-expiry", type=click.FloatRange(1.0), default=1800.0, show_default=True,
              metavar="SECONDS", help="Forget SAs silent this long.")
@click.option("--max-sas", type=click.IntRange(10), default=20000, show_default=True,
              metavar="N", help="Track at most N SAs (the least recently active are evicted).")
@click.option("--report-within", type=click.FloatRange(0.0), default=2.0, show_default=True,
              metavar="SECONDS",
              help="The final report comes at most this long after the stop (Ctrl-C, SIGTERM, "
                   "--duration); when the final rules over everything held are not done by "
                   "then, the report is that of the last evaluation, with its time and what "
                   "came after it said in the capture warnings (0: no bound).")
@click.option("--buffer", "buffer_mb", type=click.IntRange(4, 4096), default=64,
              show_default=True, metavar="MB", help="Capture ring size per interface.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              metavar="N", help="Capture processes sharing each interface's packets (Linux "
                                "PACKET_FANOUT, one group per interface, by flow: each ESP SA "
                                "stays in one); the ESP of each is tracked there, the rest (and "
                                "the ESP of --keys SPIs) here (docs/internals.md).  Needs the "
                                "afpacket backend and named interfaces (not 'any').")
@click.option("--no-promisc", "promisc", flag_value=False, default=True,
              help="Do not put the interface in promiscuous mode.")
@click.option("--backend", type=click.Choice(["afpacket", "tcpdump", "dumpcap"]),
              default="afpacket", show_default=True,
              help="Capture backend (bench/RESULTS.md 'Live capture' compares them).")
@click.option("--duration", type=click.FloatRange(0.1), default=None, metavar="SECONDS",
              help="Stop by itself after this long.")
@click.option("--status-interval", type=click.FloatRange(0.0), default=60.0, show_default=True,
              metavar="SECONDS", help="Seconds between status events in --events jsonl (0: none).")
@click.option("--metrics", default=None, metavar="ADDR:PORT",
              help="Serve each tunnel's state (verdict, stage, ESP packets/bytes/loss, IKE "
                   "retransmissions, SA age, findings, capture drops) for Prometheus at "
                   "http://ADDR:PORT/metrics (needs: pip install 'pcapvpn[metrics]'; "
                   "docs/metrics.md).")
@_report_options
@click.option("--log", "logs", multiple=True, metavar="FILE",
              help="A gateway log or status file to follow as it grows (as analyze --log; "
                   "log rotation is followed; repeatable).")
@click.option("--log-tz", default=None, metavar="ZONE",
              help="Time zone of --log time stamps that name none (as analyze).")
def live(overrides, expect, vpn_servers, keys, fmt, output, peers, spis, min_severity, fail_on,
         lang, redact, redact_key, redact_map, evidence, logs=(), log_tz=None, **kw):
    """Capture on interfaces (a mirror/SPAN port), report tunnel failures as they happen, and
    print the full report when stopped (SIGINT/SIGTERM), with the report options of analyze
    (--export-evidence needs --write: live keeps no packets otherwise)."""
    from pcapvpn.live import run_command

    vantage = kw.pop("vantage", ())
    if vantage:
        if kw.get("interfaces"):
            raise click.UsageError("give every interface with --vantage NAME=IFACE when "
                                   "--vantage is used")
        pts = []
        for spec in vantage:
            name, eq, itf = spec.partition("=")
            if not eq or not name.strip() or not itf.strip():
                raise click.UsageError(f"--vantage {spec}: expected NAME=IFACE")
            pts.append((name.strip(), itf.strip()))
        if len({n for n, _ in pts}) < 2:
            raise click.UsageError("--vantage needs at least two points")
        kw["interfaces"] = tuple(i for _n, i in pts)
        kw["points"] = [n for n, _i in pts]
    elif not kw.get("interfaces"):
        raise click.UsageError("missing -i/--interface (or --vantage NAME=IFACE)")
    if kw.get("metrics") and not kw.get("print_filter"):
        _check_metrics(kw["metrics"])
    thresholds = _thresholds(overrides)
    store = _keys(keys) if keys else None
    if evidence and not kw.get("write_dir") and not kw.get("print_filter"):
        raise click.UsageError("--export-evidence needs --write DIR (live keeps no packets "
                               "otherwise)")
    ro = _report_opts(fmt=fmt, output=output, peers=peers, spis=spis, min_severity=min_severity,
                      fail_on=fail_on, lang=lang, redact=redact, redact_key=redact_key,
                      redact_map=redact_map, evidence=evidence, keys=keys, store=store)
    tz = _log_tz(log_tz)
    # the report is on disk (or standard output flushed): the process ends at once (_end)
    _end(run_command(thresholds=thresholds, expect_peers=[_parse_addr(a) for a in expect],
                         logs=list(logs), log_tz=tz,
                         vpn_servers=[_parse_server(s) for s in vpn_servers], keys=store,
                         report=ro, **kw))


#: ``main()`` (the installed command, ``python -m pcapvpn``) sets it: ``analyze`` then ends its
#: process without the interpreter's teardown (see :func:`_end`); callers of :func:`cli` in a
#: process of their own (the tests' CliRunner) never get that
_FAST_EXIT = {"on": False}


def _end(code: int):
    """The end of ``analyze`` (and ``live``) once its report is delivered (every file it wrote is closed,
    standard output and error flushed here): with :func:`main` the process ends at once with
    ``os._exit`` after the ``atexit`` handlers ran, skipping the interpreter's teardown of every
    object the analysis made (~25 ms of a 0.5 s run on the bench's 1M mix); else, or while
    another thread runs, an ordinary ``sys.exit``."""
    if _FAST_EXIT["on"]:
        import atexit
        import threading

        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            sys.exit(code)  # (a closed pipe: the ordinary exit says it as always)
        if threading.active_count() == 1:
            atexit._run_exitfuncs()
            os._exit(code)
    sys.exit(code)


def main():
    _FAST_EXIT["on"] = True
    cli(prog_name="pcapvpn")


if __name__ == "__main__":
    main()
