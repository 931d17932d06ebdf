"""perfkit runs / report / select / regress: reading the run history (read-only)."""

from __future__ import annotations

from pathlib import Path

from perfkit.cli import common
from perfkit.cli import options as O


def add_runs(sub) -> None:
    p = O.command(sub, "runs", "list the run history", "List runs in the store, newest first.", "perfkit runs --limit 5")
    p.add_argument("--limit", type=int, default=20, help="show at most this many runs (0: all)")
    O.hardware(p, "runs")
    O.json_flag(p)
    O.store(p)
    p.set_defaults(func=runs)


def runs(args) -> int:
    from perfkit.report.console import console, print_json
    from perfkit.report.hardware import ALL, hardware_of, matches
    from perfkit.report.tables import runs_table
    from perfkit.vocab import positive

    positive(args.limit, "--limit", allow_zero=True)
    wanted = args.hardware not in (None, ALL)
    with common.open_store(args, read_only=True) as store:
        # --hardware filters in Python, on what each run recorded: the same for every store
        listed = store.runs(None if wanted else args.limit or None)
        path = store.location
    for r in listed:
        r["seconds"] = (r["finished"] - r["started"]) if r["finished"] else None
        r["hardware"] = hardware_of(r["env"])
    if wanted:
        listed = [r for r in listed if matches(r["hardware"], args.hardware)][:args.limit or None]
    if args.json:
        print_json(listed)
    else:
        console.print(runs_table(listed, path))
    return 0


def add_report(sub) -> None:
    p = O.command(sub, "report", "render a run as a Rich summary, HTML, CSV or JSON",
                  "Summarise one run of the store: a Rich table per model × runtime × precision (measured and\n"
                  "published accuracy, parity, latency/throughput/memory per batch, params, MACs), the training\n"
                  "comparison, and what could not run. --html writes one self-contained file (charts included,\n"
                  "no network needed to view it); --csv writes one row per candidate and batch (model, runtime,\n"
                  "precision, hardware, accuracy, latency percentiles, throughput, memory; units in the headers);\n"
                  "--json-out exports the run's records (a `perfkit regress` baseline); --json prints the same\n"
                  "export on stdout; --mlflow logs each candidate to an MLflow tracking server.",
                  "perfkit report latest --html reports/latest.html --csv runs.csv --json-out baseline.json\n"
                  "  perfkit report latest --mlflow http://localhost:5000 --html reports/latest.html")
    p.add_argument("run", nargs="?", default="latest", help="run id, a unique prefix of one, or latest")
    p.add_argument("--html", type=Path, metavar="FILE", help="write the HTML report here")
    p.add_argument("--csv", type=Path, metavar="FILE",
                   help="write one row per candidate and batch as CSV (empty cells: not measured; the raw records "
                        "are in --json-out)")
    p.add_argument("--json-out", type=Path, metavar="FILE", help="export the run's records as JSON to FILE")
    p.add_argument("--mlflow", metavar="URI",
                   help="log each candidate as an MLflow run to this tracking URI (with --html, the report as an "
                        "artifact; needs perfkit[mlflow])")
    O.hardware(p, "the run's records", "; `all`: keep them all and compare the run's model × runtime × precision "
               "with their newest timings on every other machine in the store (a table, and an HTML chart with one "
               "group per machine); the JSON exports stay the whole run")
    O.json_flag(p)
    O.store(p)
    p.set_defaults(func=report)


def report(args) -> int:
    from perfkit.report.candidates import write_csv
    from perfkit.report.console import banner, console, print_json
    from perfkit.report.hardware import across_machines, machine_rows, only_hardware
    from perfkit.report.output import check_writable
    from perfkit.report.records_io import export_payload, write_json
    from perfkit.report.rows import load_run
    from perfkit.report.tables import machines_table, summary_table

    for flag, path in (("--json-out", args.json_out), ("--csv", args.csv), ("--html", args.html)):
        if path is not None:
            check_writable(path, flag)  # every output path before any output
    if args.mlflow is not None:
        from perfkit.report.mlflow_export import require_mlflow

        require_mlflow()  # a missing extra is said before any output, too
    with common.open_store(args, read_only=True) as store:
        run, records = load_run(store, args.run)
        records = only_hardware(records, args.hardware, f"run {run['id']}")
        if args.json:
            print_json(export_payload(store, run["id"]))
        else:
            for item in summary_table(run, records):
                console.print(item)
            if machines := machine_rows(across_machines(store, records, args.hardware)):
                console.print(machines_table(machines))
        if args.json_out is not None:
            banner(f"records of run {run['id']} written to {write_json(store, run['id'], args.json_out)}", "bold green")
        if args.csv is not None:
            banner(f"candidates of run {run['id']} written to {write_csv(run, records, args.csv)}", "bold green")
        if args.html is not None:
            from perfkit.report.html import render_html

            banner(f"HTML report written to {render_html(store, run['id'], args.html, hardware=args.hardware)}",
                   "bold green")
    if args.mlflow is not None:
        from perfkit.report.mlflow_export import log_run

        mlflow_id, count = log_run(args.mlflow, run, records, args.html)
        banner(f"{count} candidate(s) of run {run['id']} logged to MLflow at {args.mlflow} (run {mlflow_id})",
               "bold green")
    return 0


def add_select(sub) -> None:
    p = O.command(sub, "select", "rank model × runtime candidates that meet constraints",
                  "Pick what to deploy: the model × runtime × precision candidates in the store (newest numbers\n"
                  "of each, or those of one --run) that meet every constraint — --min-relative-accuracy 0.99\n"
                  "lets an int8 candidate in when it keeps 99% of eager fp32's top-1 — Pareto-optimal first (higher\n"
                  "top-1, lower p50 latency at --batch); every excluded candidate is listed with the\n"
                  "constraints it failed or the number it lacks. --scenario server --latency-bound-ms B ranks by the\n"
                  "largest QPS served with p99 within B ms instead. Exit code 1 when no candidate qualifies.",
                  "perfkit select --max-latency-ms 10 --min-top1 70 -b 1 --device cpu\n"
                  "  perfkit select --scenario server --latency-bound-ms 50")
    p.add_argument("--max-latency-ms", type=float, metavar="X", help="p50 latency at --batch must be at most X ms")
    p.add_argument("--min-top1", type=float, metavar="Y", help="top-1 (percent) must be at least Y")
    p.add_argument("--max-memory-mb", type=float, metavar="Z",
                   help="peak memory at --batch must be at most Z megabytes (10^6 bytes)")
    p.add_argument("--min-relative-accuracy", type=float, metavar="R",
                   help="measured top-1 must be at least R × eager fp32's on the same images (e.g. 0.99, MLPerf's "
                        "rule: how an fp16/int8 candidate qualifies)")
    O.batch(p, "1", "the batch size the latency and memory are taken at (one number)")
    p.add_argument("--scenario", default="singlestream", choices=("singlestream", "server"),
                   help="singlestream: rank by accuracy and p50 latency at --batch; server: by the largest QPS that "
                        "met --latency-bound-ms (the Server scenario's records)")
    p.add_argument("--latency-bound-ms", type=float, default=None, metavar="B",
                   help="with --scenario server: the p99 bound, ms (records measured at the largest bound ≤ B count)")
    p.add_argument("--device", default=None, metavar="D", help="only candidates measured on this device (cpu, cuda)")
    p.add_argument("--run", default=None, metavar="RUN", help="take the numbers of this run only (default: newest per candidate)")
    O.hardware(p, "candidates", " (default: every machine's, each machine's numbers a candidate of its own)")
    p.add_argument("--use-published", action="store_true",
                   help="where no top-1 was measured, use the published top-1 of the weights (labelled 'published')")
    O.json_flag(p)
    O.store(p)
    p.set_defaults(func=select)


def select(args) -> int:
    from perfkit.errors import GateFailed, PerfkitError, UsageError
    from perfkit.report.console import console, print_json
    from perfkit.report.select import Constraints, select as choose
    from perfkit.report.tables import select_tables
    from perfkit.vocab import parse_batches

    batches = parse_batches(args.batch)
    if len(batches) != 1:
        raise UsageError(f"select takes one batch size (-b N), got '{args.batch}'")
    if args.device not in (None, "cpu", "cuda"):
        raise UsageError(f"--device must be cpu or cuda, got '{args.device}'")
    if args.min_relative_accuracy is not None and not 0 < args.min_relative_accuracy <= 1:
        raise UsageError(f"--min-relative-accuracy is a fraction in (0, 1], got {args.min_relative_accuracy:g}")
    if args.scenario == "server" and (args.latency_bound_ms is None or args.latency_bound_ms <= 0):
        raise UsageError("select --scenario server needs --latency-bound-ms B (a positive p99 bound in ms)")
    if args.scenario != "server" and args.latency_bound_ms is not None:
        raise UsageError("--latency-bound-ms is the Server scenario's bound: add --scenario server")
    if args.scenario == "server" and args.max_latency_ms is not None:
        raise UsageError("with --scenario server the latency constraint is --latency-bound-ms (p99), not --max-latency-ms")
    constraints = Constraints(args.max_latency_ms, args.min_top1, args.max_memory_mb, batches[0], args.device,
                              args.use_published, args.min_relative_accuracy,
                              "server" if args.scenario == "server" else None, args.latency_bound_ms)
    with common.open_store(args, read_only=True) as store:
        result = choose(store, constraints, args.run, args.hardware)
        path = store.location
    if not result["selected"] and not result["excluded"]:
        raise PerfkitError(f"no measured candidates in {path}{' for run ' + args.run if args.run else ''}: "
                           f"run `perfkit run` (or `perfkit profile`) first")
    if args.json:
        print_json(result)
    else:
        for table in select_tables(result, batches[0], server=args.scenario == "server"):
            console.print(table)
    if not result["selected"]:
        raise GateFailed(f"no candidate meets the constraints ({len(result['excluded'])} excluded, see why above)")
    return 0


def add_regress(sub) -> None:
    from perfkit.report.regress import (
        DEFAULT_MAX_LATENCY_INCREASE_PCT, DEFAULT_MAX_THROUGHPUT_DROP_PCT, DEFAULT_MAX_TOP1_DROP_PP,
    )

    p = O.command(sub, "regress", "compare a candidate run with a baseline; exit 1 on regression",
                  "CI regression check: compare two runs record by record (same model, runtime, precision,\n"
                  "batch and device) and print what changed. Exit code 1 when top-1 dropped by more than\n"
                  "--max-top1-drop points, p50 latency rose by more than --max-latency-increase percent, Offline\n"
                  "samples/s fell by more than --max-throughput-drop percent, a parity check now fails, or a step\n"
                  "that ran now errors. A timing taken in another runtime configuration (hints, streams, threads,\n"
                  "the Offline K) is reported as `config changed`, one timed while other processes used the CPU as\n"
                  "`contended`; neither is gated. A p50 with the timed calls stored on both sides is judged\n"
                  "against its noise: a 95% bootstrap interval of the median ratio is printed beside the verdict,\n"
                  "and a change past the limit whose interval reaches 0% is `inconclusive`, not gated.\n"
                  "A side is a run id (or prefix, or latest) or a\n"
                  "JSON file written by `perfkit report RUN --json-out FILE` (keep the baseline in git).",
                  "perfkit regress --baseline ci/baseline.json --candidate latest --max-latency-increase 15 "
                  "--junit regress.xml")
    p.add_argument("--baseline", required=True, metavar="RUN|FILE", help="the reference run, or its JSON export")
    p.add_argument("--candidate", default="latest", metavar="RUN|FILE", help="the run to judge, or its JSON export")
    p.add_argument("--max-top1-drop", type=float, default=DEFAULT_MAX_TOP1_DROP_PP, metavar="PP",
                   help="largest allowed top-1 drop, in percentage points")
    p.add_argument("--max-latency-increase", type=float, default=DEFAULT_MAX_LATENCY_INCREASE_PCT, metavar="PCT",
                   help="largest allowed p50 latency increase, in percent")
    p.add_argument("--max-throughput-drop", type=float, default=DEFAULT_MAX_THROUGHPUT_DROP_PCT, metavar="PCT",
                   help="largest allowed drop of Offline samples/s, in percent")
    p.add_argument("--junit", type=Path, metavar="FILE",
                   help="also write the comparison as JUnit XML (one testcase per compared metric; a regression "
                        "fails, what is not judged is skipped) for CI")
    O.hardware(p, "records of both sides", " (a run of several machines: compare one machine's records)")
    p.add_argument("--across-hardware", action="store_true",
                   help="compare records measured on different hardware (refused by default: another machine's "
                        "latency is not a regression)")
    O.json_flag(p)
    O.store(p)
    p.set_defaults(func=regress)


def regress(args) -> int:
    from perfkit.errors import GateFailed
    from perfkit.report.console import banner, print_json
    from perfkit.report.regress import compare, load_side, on_hardware

    if args.junit is not None:
        from perfkit.report.output import check_writable

        check_writable(args.junit, "--junit")  # before the work, like every output path
    if not all(_is_file(x) for x in (args.baseline, args.candidate)):
        with common.open_store(args, read_only=True) as store:
            baseline, candidate = load_side(store, args.baseline), load_side(store, args.candidate)
    else:
        baseline, candidate = load_side(None, args.baseline), load_side(None, args.candidate)
    baseline, candidate = (on_hardware(side, args.hardware) for side in (baseline, candidate))
    result = compare(baseline, candidate, max_top1_drop_pp=args.max_top1_drop,
                     max_latency_increase_pct=args.max_latency_increase,
                     max_throughput_drop_pct=args.max_throughput_drop, across_hardware=args.across_hardware)
    if args.json:
        print_json(result)
    else:
        _print_regress(result, args, f"{candidate.label} vs baseline {baseline.label}")
    if args.junit is not None:
        from perfkit.report.junit import write_junit

        banner(f"JUnit report written to {write_junit(result, args.junit)}", "bold green")
    if result["regressions"]:
        raise GateFailed(f"{result['regressions']} regression(s) against {baseline.label}")
    return 0


def _print_regress(result: dict, args, title: str) -> None:
    """The comparison as a table, with what was not judged and why."""
    from perfkit.report.console import banner, console
    from perfkit.report.tables import regress_table

    if result["hardware"]["baseline"] != result["hardware"]["candidate"]:  # only with --across-hardware
        from rich.markup import escape

        banner(escape(f"compared across hardware: {'; '.join(result['hardware']['baseline'])} (baseline) → "
                      f"{'; '.join(result['hardware']['candidate'])} (candidate)"))
    if result["env_differences"]:
        banner("environments differ (latency is only comparable on the same machine): "
               + "; ".join(result["env_differences"]))
    shown = [c for c in result["changes"] if c["verdict"] != "same"]
    if shown:
        console.print(regress_table(result, title, f"gates: top-1 drop > {args.max_top1_drop:g} pp, p50 latency "
                                    f"increase > {args.max_latency_increase:g}%, Offline samples/s drop > "
                                    f"{args.max_throughput_drop:g}%, parity pass → fail, ok → error; "
                                    "config changed = measured in another configuration, contended = timed "
                                    "while other processes used the CPU, inconclusive = past the limit but within "
                                    "the noise (95% CI of the median ratio reaches 0%); none is gated"))
    else:
        console.print(f"{title}: no metric changed", markup=False)
    console.print(f"{result['compared']} records compared, {len(shown)} changes, {result['regressions']} "
                  f"regressions, {result['missing']} missing, {result['new']} new")
    contended = sum(c["verdict"] == "contended" for c in result["changes"])
    if contended:
        console.print(f"[yellow]{contended} timing change(s) not judged: contended (other processes used the CPU "
                      "while the baseline or the candidate was timed, so the change measures the machine, not "
                      "the runtime); re-run that side on a quiet machine[/]")
    noisy = sum(c["verdict"] == "inconclusive" for c in result["changes"])
    if noisy:
        console.print(f"[yellow]{noisy} p50 change(s) past the limit but inside their noise (inconclusive: the 95% "
                      "interval of the median ratio includes no change); time longer (--iterations, "
                      "--min-seconds) to decide[/]")


def _is_file(ref: str) -> bool:
    path = Path(ref)
    return path.suffix == ".json" or path.is_file()
