"""perfkit sweep MODELS -f ... -b ... [--shard I/N | --ray [ADDRESS] | --status]: a plan of cells, in this
process, one shard of it, or on Ray; records as `perfkit profile`'s."""

from __future__ import annotations

import argparse

from perfkit.cli import common
from perfkit.cli import options as O

DESCRIPTION = (
    "Expand models × runtimes × precisions × batches × scenarios into cells (one model × runtime ×\n"
    "precision × batch each; its scenarios measured inside it, as `perfkit profile` measures them) in one\n"
    "deterministic order, check them all before anything runs, and measure each with profile's code.\n"
    "Flags or a TOML file (--file; flags given win); unset, -f eager --precision fp32 -b 1,8 --scenario\n"
    "singlestream. Each artifact is exported once per model × runtime × precision and reused by its cells.\n\n"
    "Where: in this process (default); --shard I/N, one deterministic slice of the plan, for a Slurm job\n"
    "array (--shard $SLURM_ARRAY_TASK_ID/N, or --shard auto) or a Kubernetes Indexed Job (--shard\n"
    "auto/N reads $JOB_COMPLETION_INDEX); --ray [ADDRESS], as Ray tasks (extra perfkit[ray]): local starts\n"
    "a Ray instance here, an address or $RAY_ADDRESS joins a cluster whose nodes declare the resource\n"
    "perfkit_node=1 (one perfkit task per node at a time); a worker that dies has its cell retried.\n\n"
    "Resume: the sweep is named by a hash of its plan (--name to choose); each invocation or shard writes\n"
    "one run, NAME-IofN, and the same command again continues it: cells any run of the sweep recorded\n"
    "are skipped (failed ones too: see --status). --status prints what the store holds of each cell.")


def add(sub) -> None:
    p = O.command(sub, "sweep", "models × runtimes × precisions × batches as cells: here, sharded, or on Ray",
                  DESCRIPTION,
                  "perfkit sweep lenet5,resnet18 -f eager,onnx -b 1,2 --no-memory\n"
                  "  perfkit sweep --file sweep.toml --shard $SLURM_ARRAY_TASK_ID/8 --store shared.db\n"
                  "  perfkit sweep lenet5,resnet18 -f eager,onnx -b 1,2 --ray local --workers 2\n"
                  "  perfkit sweep lenet5,resnet18 -f eager,onnx -b 1,2 --status")
    p.add_argument("models", nargs="?", default=None, metavar="MODELS",
                   help="comma-separated models: zoo names or model files (see perfkit profile --help)")
    p.add_argument("--file", default=None, metavar="SWEEP.toml",
                   help="the sweep in a TOML file: models, runtimes, precision, batch, scenario, memory and any "
                        "option, named like the flags (lists or comma lists)")
    O.model(p, positional=None, weights_default=None)
    O.runtimes(p, None)
    O.batch(p, None)
    O.device(p)
    O.precision(p, None)
    O.scenario(p, None)
    p.add_argument("--memory", action=argparse.BooleanOptionalAction, default=None,
                   help="measure peak memory (one spawned process per cell; default: on)")
    _where(p)
    O.threads(p)
    O.artifacts(p)
    O.backend_options(p)
    O.json_flag(p)
    O.store(p)
    p.set_defaults(func=run)


def _where(p) -> None:
    g = p.add_argument_group("where the cells run")
    g.add_argument("--shard", default=None, metavar="I/N",
                   help="run shard I of N (0 <= I < N): a contiguous slice of the plan; auto: I (and N) from "
                        "$SLURM_ARRAY_TASK_ID ($SLURM_ARRAY_TASK_MIN, $SLURM_ARRAY_TASK_COUNT), auto/N: I from "
                        "$JOB_COMPLETION_INDEX")
    g.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run the cells as Ray tasks: local (a Ray instance on this machine), HOST:PORT or "
                        "ray://HOST:PORT; without a value, $RAY_ADDRESS, else local")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="--ray local: worker processes (default: the cores)")
    g.add_argument("--accelerator-type", default=None, metavar="TYPE",
                   help="--ray on CUDA: the Ray accelerator type each cell asks for (A100, H100, T4, ...)")
    g.add_argument("--name", default=None, help="the sweep's name in the store (default: sweep-<hash of its plan>); "
                                                "another name measures the same plan anew")
    g.add_argument("--status", action="store_true", help="print what the store holds of each cell, measure nothing")


def run(args) -> int:
    from perfkit.api import sweep

    if args.status:
        return _status(args)
    with common.progress(args, "point") as bar:
        done = sweep(args.models, **common.keywords(args, "models", "status"), notify=common.notify(args),
                     progress=bar)
    _show(args, done)
    return common.exit_code(done)


def _show(args, done) -> None:
    from perfkit.report.console import console, err_console
    from perfkit.report.tables import scenario_tables

    records = done.records()
    for r in records:
        for text in r.metrics.get("warnings") or []:
            err_console.print(f"[yellow]warning:[/] {text}")
    index, count = done.shard
    title = f"perfkit sweep {done.name} ({index}/{count}) on {done.device}"
    common.show(args, done.run_id, records, scenario_tables(records, title, footer=f"run {done.run_id}"))
    if not args.json:
        console.print(f"sweep {done.name}, shard {index}/{count}: {len(done.measured)} of {len(done.cells)} cell(s) "
                      f"measured, {len(done.skipped)} recorded already; run {done.run_id}")
        if done.failed:
            console.print(f"[red]{len(done.errors)} measurement(s) failed; see `perfkit sweep ... --status` and "
                          f"`perfkit report {done.run_id}`[/]")


def _status(args) -> int:
    from perfkit.api import sweep_status
    from perfkit.report.console import Column, console, print_json, render_table

    keywords = common.keywords(args, "models", "status", "workers", "accelerator_type")
    with common.open_store(args, read_only=True) as store:
        keywords["store"] = store
        status = sweep_status(args.models, **keywords, notify=common.notify(args))
    if args.json:
        print_json({"name": status.name, "runs": status.runs, "cells": [c.to_dict() for c in status.cells]})
        return 0
    rows = [{**c.to_dict(), "records": f"{c.recorded}/{c.expected}", "runs": ", ".join(c.runs)}
            for c in status.cells]
    columns = [Column("#", "index"), Column("model", "model", justify="left"),
               Column("runtime", "runtime", justify="left"), Column("precision", "precision", justify="left"),
               Column("batch", "batch"), Column("state", "state", justify="left"), Column("records", "records"),
               Column("runs", "runs", justify="left")]
    console.print(render_table(f"perfkit sweep {status.name}", columns, rows))
    counts = ", ".join(f"{status.count(s)} {s}" for s in ("done", "failed", "partial", "missing"))
    console.print(f"{len(status.cells)} cell(s): {counts}; runs: {', '.join(status.runs) or 'none yet'}")
    return 0
