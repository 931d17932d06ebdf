"""Scenarios: how a runner is driven to measure it. One module per scenario, one line each in
``SCENARIO_MODULES`` (like the backends).

Each module defines ``SCENARIO``, a ``Scenario``: its name (``--scenario NAME``), its command-line
options and the configuration they make, its record kind and that kind's schema, which backends it
can measure, which of the plan's batch sizes it measures, how it drives an entered runner at one
batch (``measure``: a typed result, never a record), the record metrics of that result, and, as
plain data for the report layer (which formats and renders it; measuring code never imports the
report), its table (rows from records, columns, caption lines), its headline figure (the table's
marked value, the winner of each model × precision, the chart) and what ``regress`` compares.

SingleStream is the base scenario: every profile measures it (the others build on its timing: the
Offline scenario's K = 1 is SingleStream's loop at that batch). ``register`` refuses a second
scenario of the same name or record kind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from perfkit.registry import Registry
from perfkit.results import Kind, KindSchema

__all__ = ["Column", "Compared", "Curve", "Headline", "Point", "Scenario", "ScenarioOption", "SCENARIO_MODULES",
           "all_scenarios", "base", "by_kind", "get", "newest", "parse", "register", "unregister"]

# Adding a scenario: write perfkit/profiler/scenarios/<name>.py defining SCENARIO, and add its line here.
SCENARIO_MODULES = (
    "perfkit.profiler.scenarios.singlestream",
    "perfkit.profiler.scenarios.offline",
    "perfkit.profiler.scenarios.server",
)

# The formats a column may name; perfkit.report.tables maps each to its renderer.
FORMATS = frozenset({"ms", "float3", "rate", "ratio", "speedup", "pct", "cpu_pct", "bytes", "int", "number", "text"})


@dataclass(frozen=True)
class ScenarioOption:
    """One command-line option of a scenario (``--offline-seconds``).

    ``quick``: the default ``perfkit run`` uses (its budget is minutes for every model; a function is
    called for it), None: ``default``.
    """

    name: str
    default: Any
    help: str
    type: Callable[[str], Any] = float
    quick: Any = None
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def value(self, quick: bool) -> Any:
        if not quick or self.quick is None:
            return self.default
        return self.quick() if callable(self.quick) else self.quick


@dataclass(frozen=True)
class Column:
    """One column of a scenario's table: a row key (or a function of the row returning plain text or a
    number) and the format the report renders it in (one of ``FORMATS``)."""

    header: str
    key: str | Callable[[dict], Any]
    format: str = "number"

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"column {self.header!r}: format must be one of {sorted(FORMATS)}, got {self.format!r}")


@dataclass(frozen=True)
class Headline:
    """A scenario's one figure: the table marks it (contended), the winner of each model × precision
    is the best row by it (``better``: "min" or "max"; ``smallest_batch``: among the rows of the
    smallest batch measured, as SingleStream's latency compares runtimes at one request of one image),
    and the report charts it. ``detail``: a short note beside it from the row's metrics (Offline: its K).
    """

    metric: str
    unit: str
    better: str
    format: str
    smallest_batch: bool = False
    detail: Callable[[dict], str] = lambda metrics: ""

    def __post_init__(self):
        if self.better not in ("min", "max"):
            raise ValueError(f"a headline is better at 'min' or 'max', got {self.better!r}")


@dataclass(frozen=True)
class Compared:
    """A metric ``regress`` compares: a number (its change in % or pp), a verdict (a bool) or a description
    (text, reported when it changes). A gated number names the threshold (``limit``, one of regress's:
    ``max_latency_increase_pct``, ``max_throughput_drop_pct``) and the direction that is worse
    (``worse``: +1 a rise, -1 a drop)."""

    metric: str
    type: str = "number"
    limit: str | None = None
    worse: int = 0


@dataclass(frozen=True)
class Curve:
    """A scenario's search, drawn by the report as one line per runtime × precision: the record metric
    ``points`` is a list of dicts, each with ``x``, ``y`` and ``ok`` (drawn filled where true, hollow where
    not); ``limit``: a metric drawn as a horizontal line (the Server scenario's latency bound)."""

    points: str
    x: str
    y: str
    ok: str
    x_title: str
    y_title: str
    limit: str | None = None
    note: str | None = None  # a key of each point shown when hovering over it (Server: LoadGen's verdict)


@dataclass
class Point:
    """What a scenario's ``measure`` gets: one entered runner at one batch.

    ``earlier``: the results the scenarios measured before it at this runner and batch, by scenario
    name (the Offline scenario takes its K = 1 from SingleStream's); ``flops``: (FLOPs per sample, how
    counted) or None.
    """

    spec: Any
    runner: Any
    where: Any
    ctx: Any
    config: Any
    flops: tuple[int, str] | None = None
    earlier: dict = field(default_factory=dict)

    @property
    def batch(self) -> int:
        return self.where.batch


@dataclass(frozen=True, eq=False)  # one object per scenario: compared and hashed by identity
class Scenario:
    """A way of driving a runner, and what the rest of perfkit needs to know about it. See the module
    docstring.

    Attributes:
        name: ``--scenario NAME``.
        title: its name in tables and reports (``SingleStream``).
        summary: one line for ``--help`` and the README.
        kind: its record kind (a ``Kind`` for perfkit's own, any other name for a new one).
        schema: the metrics its records carry.
        result: the type ``measure`` returns (``perfkit.record`` converts it with ``metrics``).
        measure: ``measure(point) -> result``; an exception is that point's failure (the rest go on).
        metrics: a result → its record metrics (raw numbers).
        options: its command-line options; ``configure(values by option name)`` makes its configuration
            (a ``ValueError`` is bad input, one line).
        batches: the plan's batch sizes → the ones it measures (SingleStream: all; Offline: the largest).
        unavailable: a backend → why this scenario cannot measure it (None: it can).
        rows, columns, caption: its table: rows (dicts of raw values) from a run's records, the columns,
            and plain-text caption lines (``caption(records)``); the report adds winners, warnings and
            contention.
        headline: its one figure (table mark, winners, chart); compared: what ``regress`` compares;
        same_config: metrics that, with the runtime configuration, must agree for two timings to be
            judged against each other (Offline: the K and threads per request that won).
        curve: its search as the report draws it (Server: p99 against each target QPS tried), or None.
        base: measured by every profile (SingleStream).
    """

    name: str
    title: str
    summary: str
    kind: Kind | str
    schema: KindSchema
    result: type
    measure: Callable[[Point], Any]
    metrics: Callable[[Any], dict]
    headline: Headline
    options: tuple[ScenarioOption, ...] = ()
    configure: Callable[[dict], Any] = lambda values: None
    batches: Callable[[Sequence[int]], tuple[int, ...]] = tuple
    unavailable: Callable[[Any], str | None] = lambda backend: None
    rows: Callable[[list], list[dict]] = lambda records: []
    columns: tuple[Column, ...] = ()
    caption: Callable[[list], list[str]] = lambda records: []
    compared: tuple[Compared, ...] = ()
    same_config: tuple[str, ...] = ()
    curve: Curve | None = None
    base: bool = False

    def config(self, values: dict | None = None, *, quick: bool = False) -> Any:
        """Its configuration from option values (by name; defaults for the rest)."""
        given = {o.name: o.value(quick) for o in self.options} | {k: v for k, v in (values or {}).items()
                                                                   if v is not None}
        return self.configure(given)


def _check(scenario: Scenario, others: list[Scenario]) -> None:
    """One scenario per record kind, options of its own, and one base scenario."""
    for other in others:
        if other.kind == scenario.kind:
            raise ValueError(f"scenario '{scenario.name}' (kind {scenario.kind}) clashes with '{other.name}'")
        if {o.name for o in other.options} & {o.name for o in scenario.options}:
            raise ValueError(f"scenario '{scenario.name}' declares an option of scenario '{other.name}'")
    if scenario.base and any(s.base for s in others):
        raise ValueError("only one scenario is the base one (SingleStream)")


REGISTRY: Registry[Scenario] = Registry("scenario", Scenario, SCENARIO_MODULES, "SCENARIO", check=_check)
register, unregister, get, all_scenarios = REGISTRY.register, REGISTRY.unregister, REGISTRY.get, REGISTRY.all


def base() -> Scenario:
    """The scenario every profile measures (SingleStream)."""
    return REGISTRY.find(lambda s: s.base)


def by_kind(kind: str) -> Scenario | None:
    """The scenario whose records are of ``kind`` (None: no scenario's)."""
    return REGISTRY.find(lambda s: s.kind == kind)


def parse(text: str | Iterable[str]) -> list[Scenario]:
    """``"offline"`` or ``"singlestream,offline"`` → scenarios in registry order, the base one always first."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    chosen = {get(p).name for p in (str(p).strip() for p in parts) if p}
    return [s for s in all_scenarios() if s.base or s.name in chosen]


def newest(records: Iterable, kind: str, key: Callable | None = None) -> dict:
    """The newest record of ``kind`` (ok or error) per ``key`` (default: the record's key), oldest key
    first: a resumed run may hold a point twice. Plain data over records, for scenarios' ``rows``."""
    key = key or (lambda r: r.key)
    out: dict = {}
    for r in sorted((r for r in records if r.kind == kind), key=lambda r: r.created):
        out[key(r)] = r
    return out
