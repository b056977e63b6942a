"""The `cctally` command. Imports stay lazy: a report never loads Flask, the watcher or the scheduler."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Sequence

from . import __version__
from .config import DEFAULT_HOST, DEFAULT_PORT, NoClaudeRootsError

log = logging.getLogger("cctally")

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def _common(parser: argparse.ArgumentParser, top: bool) -> None:
    default = None if top else argparse.SUPPRESS
    parser.add_argument("--claude-dir", action="append", metavar="DIR", default=default,
                        help="Claude config dir to read (repeatable; default: CLAUDE_CONFIG_DIR, else "
                             "~/.claude and ~/.config/claude)")
    parser.add_argument("--db", metavar="PATH_OR_URL", default=default,
                        help="database file or URL (default: CCTALLY_DB, else the platform data dir)")
    parser.add_argument("--host-id", metavar="NAME", default=default,
                        help="name this machine's rows carry (default: the hostname)")
    parser.add_argument("--log-level", default="warning" if top else argparse.SUPPRESS,
                        choices=["debug", "info", "warning", "error"], help="log verbosity on stderr")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cctally", description="An exact, permanent ledger of Claude Code usage.")
    parser.add_argument("--version", action="version", version=f"cctally {__version__}")
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("ingest", help="catch up on new transcript lines, then exit")
    _common(p, top=False)

    p = sub.add_parser("report", help="print a usage report")
    p.add_argument("kind", choices=["daily", "weekly", "monthly", "sessions", "projects", "models", "blocks", "hosts"])
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="JSON output")
    fmt.add_argument("--csv", action="store_true", help="CSV output")
    p.add_argument("--since", help="first day (YYYY-MM-DD, local to --tz)")
    p.add_argument("--until", help="last day, inclusive (YYYY-MM-DD)")
    p.add_argument("--tz", help="IANA time zone for days/weeks/months (default: local)")
    p.add_argument("--project", help="only this project (its path, or the last part of it)")
    p.add_argument("--model", help="only models whose name contains this")
    p.add_argument("--host", dest="host_filter", help="only requests recorded by this host")
    p.add_argument("--mode", choices=["auto", "calculate", "display"], default="auto",
                   help="cost: auto = logged costUSD where present, else priced; calculate = always priced; "
                        "display = logged costUSD only")
    p.add_argument("--no-ingest", action="store_true", help="report from the ledger without catching up first")
    _common(p, top=False)

    p = sub.add_parser("status", help="roots, database, files tracked, last ingest, daemon state")
    p.add_argument("--json", action="store_true")
    _common(p, top=False)

    p = sub.add_parser("run", help="foreground daemon: catch up, watch, sample, serve the page and API")
    p.add_argument("--no-web", action="store_true", help="do not serve HTTP")
    p.add_argument("--host", default=os.environ.get("CCTALLY_HOST", DEFAULT_HOST),
                   help=f"address to bind (default: CCTALLY_HOST, else {DEFAULT_HOST})")
    p.add_argument("--port", type=int, default=int(os.environ.get("CCTALLY_PORT", DEFAULT_PORT)))
    p.add_argument("--allow-remote", action="store_true", help="required to bind a non-loopback address")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="extra Host header value to accept (repeatable)")
    p.add_argument("--reconcile-seconds", type=float, default=60.0)
    p.add_argument("--sample-seconds", type=float, default=5.0)
    p.add_argument("--no-sample", action="store_true", help="do not sample Claude processes")
    p.add_argument("--polling", action="store_true", help="use the polling observer instead of inotify/FSEvents")
    _common(p, top=False)

    p = sub.add_parser("service", help="install cctally as a systemd user service or launchd agent")
    p.add_argument("action", choices=["install", "uninstall", "status"])
    p.add_argument("--dry-run", action="store_true", help="print what would be written and run; change nothing")
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--host", default=None)
    _common(p, top=False)

    p = sub.add_parser("migrate-db", help="copy a ledger into another database (idempotent)")
    p.add_argument("--from", dest="source", required=True, metavar="URL")
    p.add_argument("--to", dest="target", required=True, metavar="URL")
    _common(p, top=False)
    return parser


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level != "debug":        # APScheduler narrates every job run at INFO
        logging.getLogger("apscheduler").setLevel(logging.WARNING)


def _open(args: argparse.Namespace):
    from .config import database_url
    from .store import open_store
    return open_store(database_url(args.db))


def _roots(args: argparse.Namespace):
    from .config import claude_roots
    return claude_roots(args.claude_dir)


class _ProgressBar:
    """A one-line progress bar on a terminal's stderr; silent otherwise."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        now = time.monotonic()
        if now - self.last < 0.1 and done < total:
            return
        self.last = now
        frac = min(1.0, done / total)
        bar = "#" * int(frac * 30)
        sys.stderr.write(f"\r[{bar:<30}] {frac * 100:5.1f}%  {done / 1e6:,.1f}/{total / 1e6:,.1f} MB")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _catch_up(args: argparse.Namespace, store, progress=None):
    from .config import host_id
    from .ingest import Ingester
    ingester = Ingester(store, _roots(args), host=host_id(args.host_id))
    summary = ingester.catch_up(progress)
    if summary.files_read or summary.files_missing:     # no write transaction when nothing changed
        store.set_meta("last_ingest", json.dumps({"at_ms": int(time.time() * 1000), "summary": summary.line(),
                                                    "new_requests": summary.new_requests,
                                                    "skipped_lines": summary.skipped_lines}))
    return summary


def cmd_ingest(args: argparse.Namespace) -> int:
    store = _open(args)
    summary = _catch_up(args, store, _ProgressBar())
    print(f"ingested {summary.line()}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from .reports import Filters, Reports, local_tz, parse_day
    from .render import render_csv, render_table
    filters = Filters(since=parse_day(args.since, "since"), until=parse_day(args.until, "until"),
                      tz=local_tz(args.tz), project=args.project, model=args.model, host=args.host_filter,
                      mode=args.mode)
    store = _open(args)
    if not args.no_ingest:
        try:
            roots = _roots(args)
            from .heartbeat import live_daemon
            if live_daemon(store.url, roots) is None:      # a running daemon keeps the ledger current
                _catch_up(args, store)
        except NoClaudeRootsError as exc:
            log.warning("%s; reporting from the ledger only", exc)
    reports = Reports(store)
    data = reports.report(args.kind, filters)
    unpriced = reports.unpriced_models(filters)
    if args.json:
        if unpriced:
            data["unpriced_models"] = unpriced
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif args.csv:
        render_csv(args.kind, data, sys.stdout)
    else:
        render_table(args.kind, data, sys.stdout, tz=filters.tz)
        if unpriced:
            print(f"\nnot priced (unknown to genai-prices, counted at $0): {', '.join(unpriced)}")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from .status import collect_status, render_status
    info = collect_status(args)
    if args.json:
        json.dump(info, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        render_status(info, sys.stdout)
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import run_daemon
    return run_daemon(args)


def cmd_service(args: argparse.Namespace) -> int:
    from .service import run_service_command
    return run_service_command(args.action, dry_run=args.dry_run, port=args.port, host=args.host)


def cmd_migrate_db(args: argparse.Namespace) -> int:
    from .copydb import copy_ledger
    from .config import database_url
    result = copy_ledger(database_url(args.source), database_url(args.target))
    print(result)
    return EXIT_OK


COMMANDS = {"ingest": cmd_ingest, "report": cmd_report, "status": cmd_status, "run": cmd_run,
            "service": cmd_service, "migrate-db": cmd_migrate_db}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    _setup_logging(args.log_level)
    from .reports import ReportError
    from .store import StoreError
    try:
        return COMMANDS[args.command](args)
    except NoClaudeRootsError as exc:
        print(f"cctally: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ReportError as exc:
        print(f"cctally: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as exc:
        print(f"cctally: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
