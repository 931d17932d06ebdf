"""Rich rendering: the only place that turns raw numbers into text for the terminal.

Commands describe a table as columns of (header, key, formatter) over plain dict rows; the
formatters below are the one place units and rounding are decided.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

# stderr carries progress and banners so that `--json` output on stdout stays machine-readable.
# Piped output gets a wide fixed width instead of Rich's 80 columns, so tables stay one line a row.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)


@dataclass
class Column:
    header: str
    key: str | Callable[[dict], object]
    fmt: Callable[[object], str] = lambda v: "—" if v is None else str(v)
    justify: str = "right"
    style: str | None = None

    def value(self, row: dict):
        return self.key(row) if callable(self.key) else row.get(self.key)


def render_table(title: str, columns: Sequence[Column], rows: Iterable[dict], *, caption: str | None = None,
                 row_style: Callable[[dict], str | None] | None = None) -> Table:
    table = Table(title=title, caption=caption, show_lines=False, header_style="bold")
    for c in columns:
        table.add_column(c.header, justify=c.justify, style=c.style, overflow="fold")
    for row in rows:
        table.add_row(*(c.fmt(c.value(row)) for c in columns), style=row_style(row) if row_style else None)
    return table


def print_table(*args, **kwargs) -> None:
    console.print(render_table(*args, **kwargs))


def print_json(obj) -> None:
    """Machine output: plain JSON on stdout, nothing else."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def banner(text: str, style: str = "bold yellow") -> None:
    err_console.print(f"[{style}]{text}[/]")


# -- formatters: raw number -> text ---------------------------------------------------------------

def _none(v) -> bool:
    return v is None or v == ""


def fmt_int(v) -> str:
    return "—" if _none(v) else f"{int(v):,}"


def fmt_float(digits: int = 3) -> Callable[[object], str]:
    return lambda v: "—" if _none(v) else f"{float(v):.{digits}f}"


def fmt_pct(v) -> str:
    return "—" if _none(v) else f"{float(v):.3f}%"


def fmt_giga(v) -> str:
    return "—" if _none(v) else f"{float(v) / 1e9:.3f} G"


def fmt_si(v) -> str:
    """A count with an SI prefix chosen by size: 651.72 k, 1.814 G (MACs of small and large models)."""
    if _none(v):
        return "—"
    v = float(v)
    for div, unit, digits in ((1e12, "T", 3), (1e9, "G", 3), (1e6, "M", 2), (1e3, "k", 2)):
        if abs(v) >= div:
            return f"{v / div:.{digits}f} {unit}"
    return f"{v:g}"


def fmt_mega(v) -> str:
    return "—" if _none(v) else f"{float(v) / 1e6:.2f} M"


def fmt_bytes(v) -> str:
    if _none(v):
        return "—"
    v = float(v)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(v) < 1024 or unit == "GiB":
            return f"{v:.1f} {unit}" if unit != "B" else f"{int(v)} B"
        v /= 1024
    return f"{v:.1f} GiB"


def fmt_ms(v) -> str:
    return "—" if _none(v) else f"{float(v):.3f} ms"


def fmt_latency(v) -> str:
    """A latency to about three significant digits: 0.412 ms, 7.00 ms, 25.2 ms, 143 ms."""
    if _none(v):
        return "—"
    v = float(v)
    return f"{v:.{3 if v < 1 else 2 if v < 10 else 1 if v < 100 else 0}f} ms"


def fmt_sci(v) -> str:
    if _none(v):
        return "—"
    v = float(v)
    return "NaN" if math.isnan(v) else (f"{'-' if v < 0 else ''}Inf" if math.isinf(v) else f"{v:.2e}")


def fmt_bool(v) -> str:
    return "—" if v is None else ("[green]pass[/]" if v else "[red]FAIL[/]")


def fmt_time(ts) -> str:
    import time

    return "—" if _none(ts) else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(ts)))


def fmt_seconds(v) -> str:
    if _none(v):
        return "—"
    v = float(v)
    return f"{int(v // 60)}m {v % 60:.0f}s" if v >= 60 else f"{v:.1f}s"


def fmt_speedup(v) -> str:
    return "—" if _none(v) else f"{float(v):.2f}×"


def fmt_cpu_pct(v) -> str:
    return "—" if _none(v) else f"{float(v):.0f}%"


def fmt_text(v) -> str:
    return "—" if _none(v) else str(v)


# A scenario column's format (``perfkit.profiler.scenarios.FORMATS``) → its plain-text renderer (the Rich
# tables escape the text, the HTML template autoescapes it).
FORMATS = {
    "ms": fmt_ms, "float3": fmt_float(3), "rate": fmt_float(1), "ratio": fmt_float(2), "speedup": fmt_speedup, "pct": fmt_pct,
    "cpu_pct": fmt_cpu_pct, "bytes": fmt_bytes, "int": fmt_int, "number": fmt_text, "text": fmt_text,
}
