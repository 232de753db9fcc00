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

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3


class _Group(click.Group):
    def main(self, *args, **kwargs):  # turn unexpected exceptions into exit 3 with a short report
        try:
            return super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.Abort:
            click.echo("pcapvpn: aborted", err=True)
            sys.exit(130)
        except click.ClickException as e:
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


def _internal_error(e: BaseException) -> None:
    tb = traceback.extract_tb(e.__traceback__)
    where = f"{tb[-1].filename}:{tb[-1].lineno} in {tb[-1].name}" if tb else "?"
    click.echo(f"pcapvpn: internal error: {type(e).__name__}: {e}", err=True)
    click.echo(f"  at {where}", err=True)
    click.echo("  This is a bug in pcapvpn. Please report it with the command line and, if you can,"
               " the capture (set PCAPVPN_DEBUG=1 for the full traceback).", err=True)
    if os.environ.get("PCAPVPN_DEBUG"):
        traceback.print_exception(e)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pcapvpn")
def cli():
    """pcapvpn: find out why a VPN does not come up or keeps dropping, from a packet capture."""


_SEVERITIES = ["critical", "error", "warning", "info"]


def _parse_addr(value: str) -> bytes:
    import ipaddress

    try:
        return ipaddress.ip_address(value).packed
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an IPv4 or IPv6 address") from None


def _parse_spi(value: str) -> int:
    v = value.lower().removeprefix("0x")
    try:
        n = int(v, 16)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a hexadecimal SPI") from None
    return n


def _progress_printer():
    state = {"last": 0.0}

    def show(name, done, total):
        import time

        now = time.monotonic()
        if now - state["last"] < 0.2 and done < total:
            return
        state["last"] = now
        pct = 100.0 * done / total if total else 0.0
        sys.stderr.write(f"\r{name}: {pct:5.1f}% ")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


@cli.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text",
              show_default=True, help="Report format.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the report to this file instead of standard output.")
@click.option("--peer", "peers", multiple=True, metavar="ADDR",
              help="Only report tunnels involving this gateway address (repeatable).")
@click.option("--spi", "spis", multiple=True, metavar="SPI",
              help="Only report tunnels carrying this ESP SPI or IKE SPI (hex; repeatable).")
@click.option("--min-severity", type=click.Choice(_SEVERITIES), default="info", show_default=True,
              help="Hide findings below this severity.")
@click.option("--fail-on", type=click.Choice(_SEVERITIES), default="error", show_default=True,
              help="Exit with status 1 when a finding at or above this severity is reported.")
@click.option("--expect-peer", "expect", multiple=True, metavar="ADDR",
              help="A gateway that should appear: 'nothing was sent to or from it' becomes a finding.")
@click.option("--set", "overrides", multiple=True, metavar="NAME=VALUE",
              help="Override a threshold (see README 'Thresholds'), e.g. --set response_timeout=20.")
@click.option("--keys", "keys", multiple=True, metavar="PATH",
              help="Decryption keys: a Wireshark ikev1_decryption_table / ikev2_decryption_table / "
                   "esp_sa file (as strongSwan's save-keys writes them), or a directory holding "
                   "them (repeatable).")
@click.option("--stop-after", type=click.Choice(["read", "decode", "full"]), default="full",
              hidden=True, help="Benchmarks: stop after a pipeline stage.")
def analyze(files, fmt, output, peers, spis, min_severity, fail_on, expect, overrides, stop_after,
            keys):
    """Analyse capture files (pcap, pcapng, gzip-compressed, '-' for stdin).

    Several files are pieces of one capture point and are merged by time.
    """
    from pcapvpn.analysis import Options, run
    from pcapvpn.report import render, select
    from pcapvpn.sources import SourceError
    from pcapvpn.thresholds import DEFAULT

    if list(files).count("-") > 1:
        raise click.UsageError("standard input ('-') can be given only once")
    items = {}
    for o in overrides:
        if "=" not in o:
            raise click.BadParameter(f"{o!r}: expected NAME=VALUE", param_hint="--set")
        k, v = o.split("=", 1)
        items[k.strip()] = v.strip()
    try:
        thresholds = DEFAULT.with_overrides(items)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--set") from None
    options = Options(thresholds=thresholds, stop_after=stop_after,
                      expect_peers=[_parse_addr(a) for a in expect])
    if keys:
        from pcapvpn.keys import KeyFileError, load_keys

        try:
            options.keys = load_keys(keys)
        except KeyFileError as e:
            click.echo(f"pcapvpn: error: key file {e}", err=True)
            sys.exit(EXIT_USAGE)
    if sys.stderr.isatty() and output != "-":
        options.progress = _progress_printer()
    try:
        result = run(files, options)
    except SourceError as e:
        click.echo(f"pcapvpn: error: {e}", err=True)
        sys.exit(EXIT_USAGE)
    report = select(result.report, peers=[_parse_addr(a) for a in peers],
                    spis=[_parse_spi(s) for s in spis], min_severity=min_severity)
    color = output is None and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    text = render(report, fmt, color=color)
    if output:
        try:
            with open(output, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:
            click.echo(f"pcapvpn: error: cannot write {output}: {e.strerror}", err=True)
            sys.exit(EXIT_USAGE)
    else:
        sys.stdout.write(text)
    limit = _SEVERITIES.index(fail_on)
    failed = any(_SEVERITIES.index(f.severity) <= limit for f in report.findings)
    sys.exit(EXIT_FINDINGS if failed else EXIT_OK)


def main():
    cli(prog_name="pcapvpn")


if __name__ == "__main__":
    main()
