"""The simulator's command line: arguments, the printed summary, exit codes."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from server.client import ClientError, HttpTransport

from .device import SimError
from .faults import Latencies
from .geo import NoPoint
from .memory import Trimmer
from .run import SAMPLE_VILLAGES, Config, Simulation
from .villages import MOST as MOST_VILLAGES


def _p99(figures: dict[str, Any], label: str) -> str:
    stats = figures["latency_ms"].get(label)
    return f"{stats['p99_ms']:,.0f} ms" if stats else "not measured"


def _arrivals(figures: dict[str, Any]) -> str:
    arrivals = figures["arrivals"]
    if arrivals["mode"] == "burst":
        return f"a burst, {figures['devices']} phones at once in every stage"
    return (f"spread uniformly over {arrivals['window_s']:g} s in every stage ({figures['devices']} phones); "
            f"at most {arrivals['most_busy']} phones syncing at one moment; {arrivals['late']} phone-stages began "
            f"over 0.1 s late (at most {arrivals['most_late_s']:.1f} s; {arrivals['late_for_thread']} of them for "
            "want of a thread, the others because the simulator's own CPU was behind)")


def summary_text(figures: dict[str, Any]) -> str:
    events, push, pull, own = figures["events"], figures["push"], figures["pull"], figures["simulator"]
    rejected = ", ".join(f"{code} {count}" for code, count in events["rejected"].items()) or "none"
    lines = [
        f"kunjung device simulation against {figures['server']} (seed {figures['seed']}, run {figures['run_tag']})",
        f"  devices {figures['devices']} ({figures['skewed_devices']} with a fast clock), rounds {figures['rounds']}, "
        f"households {figures['households']}, took {figures.get('duration_s', 0):.1f} s",
        f"  events created {events['created']} (visits {events['visits']}, edits {events['edits']}); "
        f"events sent {events['sent']} (every attempt), answered: applied {events['applied']}, "
        f"duplicate {events['duplicate']}, rejected {rejected}; re-stamped {events['restamped']}; "
        f"resent on purpose {events['resent_known'] + events['repeated_in_batch']}",
        f"  push requests {push['requests']} (lost requests {push['lost_requests']}, lost replies "
        f"{push['lost_replies']}), pull pages {pull['pages']} of {pull['requests']} requests, "
        f"{pull['changes']} changes, fresh starts after invalid_cursor {pull['fresh_starts']}",
        f"  open conflicts: server {figures['conflicts']['server']}, oracle {figures['conflicts']['oracle']}; "
        f"resolutions by the supervisor during the run {figures['conflicts']['resolved_by_supervisor']}; "
        f"officers lent a village {figures['reassigned_officers']}",
        f"  simulator: {own['cpu_s']:.1f} s CPU ({own['cpu_ms_per_device']:,.0f} ms per device; while syncing "
        f"{own['cpu_ms_per_sync']:,.1f} ms per phone's sync, {own['cpu_ms_per_request']:,.2f} ms per request), "
        f"peak RSS {own['peak_rss_mb']:.0f} MB, "
        f"{own['distinct_households_held']} distinct household copies held, "
        f"at most {figures['concurrency']} devices at once"
        + (f" over {figures['connections']} connections" if figures.get("connections") else ""),
        f"  arrivals: {_arrivals(figures)}",
        f"  push p99 {_p99(figures, 'POST /api/v1/sync/push')}, pull p99 {_p99(figures, 'GET /api/v1/sync/pull')}; "
        f"lost events {figures['lost_events']}, duplicated events {figures['duplicated_events']}",
        "  latency (ms)                                 count      p50      p95      p99      max",
    ]
    for label, stats in figures["latency_ms"].items():
        lines.append(f"    {label:<42} {stats['count']:>7} {stats['p50_ms']:>8.1f} {stats['p95_ms']:>8.1f} "
                     f"{stats['p99_ms']:>8.1f} {stats['max_ms']:>8.1f}")
    lines.append("  checks:")
    for name, check in figures["checks"].items():
        verdict = "ok" if check["ok"] else f"FAILED ({check['failures']})"
        lines.append(f"    {name:<24} {verdict:<14} checked {check['checked']}")
        lines.extend(f"      - {example}" for example in check["examples"][:5])
    lines.append("ALL CHECKS PASSED" if figures["ok"] else "SOME CHECKS FAILED")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Simulate officers' phones against a kunjung server: offline visits and edits of the "
                    "shipped household form, conflicts, duplicates, lost replies, a fast clock, points in and "
                    "out of the village; then check every replica and the server against an oracle fold. "
                    "Exits 0 when every check passes, 1 when one fails, 2 when the run cannot start.")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the server (default %(default)s)")
    parser.add_argument("--devices", type=int, default=20, help="officers, one phone each (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="offline periods, each ending in a sync")
    parser.add_argument("--events-per-round", type=int, default=4, help="visits and edits per device per round")
    parser.add_argument("--seed", type=int, default=1, help="seed of every random choice (default %(default)s)")
    parser.add_argument("--concurrency", type=int, default=16,
                        help="devices working at once, each on a thread of a bounded pool (default %(default)s)")
    parser.add_argument("--connections", type=int, default=64,
                        help="requests in flight at once, over this many kept-alive connections; a device's "
                             "request beyond them waits for one, and the wait counts in its latency, as the "
                             "server's queue would (default %(default)s)")
    parser.add_argument("--arrival-window", type=float, default=0.0, metavar="SECONDS",
                        help="spread each stage's syncs over this many seconds, every phone at its own uniformly "
                             "drawn moment, as at a village-hall peak (default 0: a burst, every phone at once)")
    parser.add_argument("--drop-rate", type=float, default=0.1, help="share of requests or replies lost")
    parser.add_argument("--dup-rate", type=float, default=0.2, help="share of batches that resend known events")
    parser.add_argument("--outside-rate", type=float, default=0.15, help="share of visits outside the village")
    parser.add_argument("--resolve-rate", type=float, default=0.3,
                        help="share of open conflicts the supervisor resolves during each round after the first")
    parser.add_argument("--reassign", type=int, default=2, help="officers lent another village in round 2 and "
                        "losing it in round 3 (needs the admin; 0: none)")
    parser.add_argument("--skewed", type=int, default=None, help="devices whose clock is an hour fast "
                        "(default: a tenth, at least one)")
    parser.add_argument("--batch-max", type=int, default=6, help="most events in one push")
    parser.add_argument("--pull-limit", type=int, default=50, help="page size of device pulls")
    parser.add_argument("--gzip", action="store_true", help="gzip push bodies")
    parser.add_argument("--own-writes-supersede", action="store_true",
                        help="check against the rule that a device's write supersedes its own earlier writes to "
                             "the field, in device_seq order (docs/design.md §2; for a server whose merge has it)")
    parser.add_argument("--admin-user", default="admin", help="admin who creates the accounts")
    parser.add_argument("--admin-password", default=None,
                        help="the admin's password (default: $KUNJUNG_SIM_ADMIN_PASSWORD)")
    parser.add_argument("--accounts", type=Path, default=None,
                        help='JSON {"supervisor": {"username", "password"}, "officers": [{...}, ...]}: use these '
                             "accounts instead of creating them (boundaries must be imported already; the supervisor "
                             "needs see_identifiers: true, as the checks compare NIK and No. KK whole)")
    parser.add_argument("--no-import-villages", action="store_true",
                        help="expect the sample boundaries to be imported already")
    parser.add_argument("--villages-file", type=Path, default=SAMPLE_VILLAGES, help="village boundaries GeoJSON")
    parser.add_argument("--synthetic-villages", type=int, default=0, metavar="COUNT",
                        help="instead of --villages-file, this many synthetic villages of a regency no real one has "
                             "(32.98), a dozen to a kecamatan, so that a crowd spreads over villages as in the field "
                             "(default 0: the file)")
    parser.add_argument("--run-tag", default=None, help="tag of this run's usernames and ids (default: random)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for one reply")
    parser.add_argument("--json", type=Path, default=None, help="write the figures to this file")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    args = parser.parse_args(argv)
    if min(args.devices, args.rounds, args.events_per_round, args.batch_max, args.concurrency, args.connections) < 1:
        parser.error("--devices, --rounds, --events-per-round, --batch-max, --concurrency and --connections must be "
                     "at least 1")
    if not 0 <= args.synthetic_villages <= MOST_VILLAGES:
        parser.error(f"--synthetic-villages must be between 0 and {MOST_VILLAGES}")
    if not 0 <= args.arrival_window <= 86_400:
        parser.error("--arrival-window must be between 0 and 86400 seconds")
    for name in ("drop_rate", "dup_rate", "outside_rate", "resolve_rate"):
        if not 0 <= getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be in [0, 1)")
    return args


def config_from(args: argparse.Namespace) -> Config:
    accounts = json.loads(args.accounts.read_text(encoding="utf-8")) if args.accounts else None
    return Config(devices=len(accounts["officers"]) if accounts and args.devices > len(accounts["officers"])
                  else args.devices,
                  rounds=args.rounds, events_per_round=args.events_per_round, seed=args.seed,
                  concurrency=args.concurrency, drop_rate=args.drop_rate, dup_rate=args.dup_rate,
                  outside_rate=args.outside_rate, resolve_rate=args.resolve_rate, skewed_devices=args.skewed,
                  batch_max=args.batch_max, reassign=args.reassign, pull_limit=args.pull_limit, gzip=args.gzip,
                  own_writes_supersede=args.own_writes_supersede, admin_user=args.admin_user,
                  admin_password=args.admin_password or os.environ.get("KUNJUNG_SIM_ADMIN_PASSWORD"),
                  accounts=accounts, import_villages=not args.no_import_villages, villages_file=args.villages_file,
                  synthetic_villages=args.synthetic_villages,
                  run_tag=args.run_tag, arrival_s=args.arrival_window)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log = (lambda message: None) if args.quiet else (lambda message: print(message, file=sys.stderr, flush=True))
    try:
        latencies = Latencies()
        connections = min(args.connections, args.concurrency + 2)
        transport = HttpTransport(args.url, timeout=args.timeout, pool_size=connections, max_connections=connections,
                                  observe_wait=latencies.observe_wait)
        simulation = Simulation(config_from(args), transport, log, latencies)
        with Trimmer():
            figures = simulation.run()
    except (SimError, NoPoint, ClientError, ValueError, OSError, KeyError) as error:
        print(f"simulate_devices: {error}", file=sys.stderr)
        return 2
    print(summary_text(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
