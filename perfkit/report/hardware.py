"""Hardware as a dimension of the history: which machine a record was measured on, ``--hardware``
filtering, and one model × runtime × precision compared across machines.

The identity is the measuring side's (``perfkit.env.hardware``, stored in every record's fingerprint
under ``hardware``); a record written before it was is given the same identity from the fields its
fingerprint always had (cpu_model, cpu_flags, cpu_count, gpu_name), so old and new records of one
machine group together.

``--hardware TEXT`` selects the records whose hardware key is TEXT exactly, or whose label contains
TEXT (case-insensitive): ``--hardware epyc``, ``--hardware "H100"``, ``--hardware c884137219a0``.
"""

from __future__ import annotations

from collections.abc import Iterable

from perfkit.env import hardware
from perfkit.errors import UsageError
from perfkit.report.rows import is_random, latest_ok
from perfkit.store import Kind, Record

ALL = "all"  # report --hardware all: the same candidates measured on every machine in the store


def _is_cuda(device: str | None) -> bool:
    return str(device or "cpu").startswith("cuda")


def hardware_of(env: dict | None, device: str | None = None) -> dict:
    """The hardware identity of a fingerprint for work on ``device`` (default: the fingerprint's own
    device): the stored one, or — recorded before identities were, hand-edited, or the record ran on
    another kind of device than its run's fingerprint describes — one derived from its fields."""
    env = env or {}
    stored = env.get("hardware")
    same_kind = device is None or _is_cuda(device) == _is_cuda(env.get("device"))
    if same_kind and isinstance(stored, dict) and all(isinstance(stored.get(k), str) for k in ("key", "label")):
        return stored
    return hardware(env, device)


def record_hardware(record: Record) -> dict:
    """What ``record`` was measured on (its own fingerprint: a sharded run's records may come from
    several machines)."""
    return hardware_of(record.env, record.device)


def matches(identity: dict, text: str) -> bool:
    """``--hardware TEXT``: TEXT is the identity's key, or a case-insensitive part of its label."""
    return text == identity["key"] or text.lower() in identity["label"].lower()


def labels(records: Iterable[Record]) -> list[str]:
    """The hardware labels of ``records``, each once, in order of appearance."""
    return list(dict.fromkeys(record_hardware(r)["label"] for r in records))


def only_hardware(records: list[Record], text: str | None, where: str) -> list[Record]:
    """``records`` measured on hardware matching ``text`` (all of them for None or ``all``); none
    matching is a UsageError naming ``where`` and the hardware it holds."""
    if text is None or text == ALL:
        return records
    kept = [r for r in records if matches(record_hardware(r), text)]
    if records and not kept:
        raise UsageError(f"no record of {where} was measured on hardware matching --hardware '{text}' (its hardware: "
                         f"{'; '.join(labels(records))})")
    return kept


def _candidate(r: Record) -> tuple:
    # the device is left out: a runtime on one machine's GPU and another's CPU is the comparison asked for
    return (r.model, r.weights, r.runtime, r.precision)


def machine_rows(records: Iterable[Record]) -> list[dict]:
    """One model × runtime × precision × batch across machines: the newest ok SingleStream timing of it
    on each hardware, for every candidate and batch timed on at least two. Empty when the records span
    one hardware. Rows: model, weights, random, runtime, precision, batch, device, hardware (label),
    hardware_key, latency_median_ms, throughput_per_s, run_id; in candidate, batch, then label order."""
    timed = [r for r in records if r.kind == Kind.LATENCY and r.runtime is not None]
    newest = latest_ok(timed, lambda r: (_candidate(r), r.batch, record_hardware(r)["key"]))
    machines: dict[tuple, int] = {}
    for candidate, batch, _ in newest:
        machines[(candidate, batch)] = machines.get((candidate, batch), 0) + 1
    out = []
    for (candidate, batch, key), r in newest.items():
        if machines[(candidate, batch)] < 2:
            continue
        identity = record_hardware(r)
        out.append({"model": r.model, "weights": r.weights, "random": is_random(r.weights), "runtime": r.runtime,
                    "precision": r.precision, "batch": batch, "device": r.device, "hardware": identity["label"],
                    "hardware_key": key, "latency_median_ms": r.metrics.get("latency_median_ms"),
                    "throughput_per_s": r.metrics.get("throughput_per_s"), "run_id": r.run_id})
    return sorted(out, key=lambda o: (o["model"], o["weights"] or "", o["runtime"], o["precision"] or "",
                                      o["batch"] or 0, o["hardware"]))


def across_machines(store, records: list[Record], text: str | None) -> list[Record]:
    """The records the cross-machine comparison draws on: ``records`` (a run's), and with
    ``--hardware all`` the timings of the same candidates from every run in ``store``."""
    if text != ALL:
        return records
    wanted = {_candidate(r) for r in records}
    # the run's own timings come back among them: harmless, machine_rows keeps the newest per machine
    return [*records, *(r for r in store.records(kind=Kind.LATENCY) if _candidate(r) in wanted)]
