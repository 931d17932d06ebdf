"""An OpenVINO IR: ``perfkit <command> model.xml`` (its weights, ``model.bin``, beside it), run by the
openvino runtime only (``perfkit.zoo.sources.engines`` says what every engine shares).

What an IR records, and what is read from it: its IR version (``<net version="11">``), the OpenVINO
release that wrote it (``rt_info``'s ``Runtime_version``), and its graph: the input and output names,
element types and shapes (a dimension ``?`` is dynamic: a dynamic batch takes any batch, a fixed one
restricts the sweep; height and width come from ``--input-size`` where the graph leaves them open).
Refused, naming both sides: an IR version this OpenVINO does not read (10 and 11, what OpenVINO 2022.1
and later read), and an IR written by a newer OpenVINO release than the one here (it may use operations
an older runtime lacks; an older writer is fine, OpenVINO reads the IRs of earlier releases). An IR is
device-independent: the plugin compiles it for the CPU it loads on. ``perfkit summary`` counts its
graph (``perfkit.analysis.openvino_macs``).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from perfkit.deps import require
from perfkit.errors import UsageError
from perfkit.zoo import sources as S
from perfkit.zoo.sources import engines as E
from perfkit.zoo.spec import OPENVINO_IR

IR_VERSIONS = (10, 11)


def _openvino():
    return require("openvino", extra="openvino", why="reading an OpenVINO IR")


def read(path: Path) -> E.EngineIO:
    weights = path.with_suffix(".bin")
    if not weights.is_file():
        raise UsageError(f"{path}: its weights {weights.name} are not beside it (an OpenVINO IR is the .xml and its "
                         ".bin, saved together)")
    version, writer = _header(path)
    ov = _openvino()
    here = ov.get_version()
    if version not in IR_VERSIONS:
        raise UsageError(f"{path} is OpenVINO IR version {version} (written by OpenVINO {_short(writer)}); this "
                         f"OpenVINO {_short(here)} reads IR versions {' and '.join(map(str, IR_VERSIONS))}")
    if writer and _release(writer) > _release(here):
        raise UsageError(f"{path} was written by OpenVINO {_short(writer)}, newer than this OpenVINO {_short(here)} "
                         "(it may use operations this release lacks): run it with OpenVINO "
                         f"{'.'.join(map(str, _release(writer)))} or later")
    try:
        model = ov.Core().read_model(str(path))
    except Exception as exc:  # OpenVINO's reader errors (a truncated or edited .bin, a broken graph), first line
        raise UsageError(f"{path}: OpenVINO {_short(here)} cannot read it ({_reason(exc)})") from None
    from perfkit.backends.openvino import ir_summary

    info = {"openvino": {"openvino_version": here, "ir_version": version, "written_by": writer or "not recorded",
                         **ir_summary(path)}}
    return _io(ov, model, path, (path, weights), info)


def _header(path: Path) -> tuple[int | None, str]:
    """The IR version and the OpenVINO release that wrote it ('' where the IR does not say)."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise UsageError(f"{path}: not an OpenVINO IR: not valid XML ({S.first_line(exc)})") from None
    if root.tag != "net":
        raise UsageError(f"{path}: not an OpenVINO IR: its root element is <{root.tag}>, not <net>")
    text = root.get("version", "")
    writer = root.find("rt_info/Runtime_version")
    return (int(text) if text.isdigit() else None), ("" if writer is None else writer.get("value", ""))


def _release(text: str) -> tuple[int, ...]:
    """An OpenVINO release's year and number (``2026.4.1-22982-...`` → (2026, 4)): patches read each other's IRs."""
    return tuple(int(n) for n in re.findall(r"\d+", text.split("-")[0])[:2])


def _short(text: str) -> str:
    return text.split("-")[0] if text else "(not recorded)"


def _reason(exc: BaseException) -> str:
    """OpenVINO's message without its source locations: the line that says what is wrong."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    said = [line for line in lines if not line.startswith(("Exception from", "Check '"))]
    return (said or lines or [type(exc).__name__])[0][:300]


def _describe(port) -> str:
    names = sorted(port.get_names())
    return f"'{names[0] if names else '?'}' {port.get_element_type().get_type_name()} {port.get_partial_shape()}"


def _io(ov, model, path: Path, files: tuple[Path, ...], info: dict) -> E.EngineIO:
    """The graph's image input and logits output; a UsageError naming what it has otherwise."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        found = "; ".join([*(f"input {_describe(p)}" for p in model.inputs),
                           *(f"output {_describe(p)}" for p in model.outputs)])
        raise UsageError(f"{path}: {E.NEEDS}; the IR has {len(model.inputs)} input(s) and {len(model.outputs)} "
                         f"output(s): {found}")
    x, y = model.inputs[0], model.outputs[0]
    xs, ys = x.get_partial_shape(), y.get_partial_shape()
    if x.get_element_type() != ov.Type.f32 or y.get_element_type() != ov.Type.f32:
        raise UsageError(f"{path}: {E.NEEDS}; it has input {_describe(x)}, output {_describe(y)}: perfkit feeds "
                         "float32 images and reads float32 logits")
    if xs.rank.is_dynamic or len(xs) != 4 or ys.rank.is_dynamic or len(ys) != 2 or ys[1].is_dynamic:
        raise UsageError(f"{path}: {E.NEEDS}; it has input {_describe(x)}, output {_describe(y)}")
    dims = [d.get_length() if d.is_static else None for d in xs]
    if dims[3] in (1, 3) and dims[1] not in (1, 3):
        raise UsageError(f"{path}: {E.NEEDS}; its input is {_describe(x)}: channels last (N, H, W, C)? perfkit "
                         "feeds channels first (N, C, H, W)")
    batch = xs[0]
    bounds = ((batch.get_length(),) * 2 if batch.is_static else
              (max(1, batch.get_min_length()), batch.get_max_length()) if batch.get_max_length() > 0 else None)
    return E.EngineIO(files=files, input_name=x.get_any_name() if x.get_names() else E.INPUT_NAME,
                      output_name=y.get_any_name() if y.get_names() else E.OUTPUT_NAME, dims=tuple(dims[1:]),
                      classes=ys[1].get_length(), batch=bounds, info=info)


FORMAT = E.Format(name=OPENVINO_IR, words="an OpenVINO IR", short="OpenVINO IR", suffixes=(".xml",),
                  runtime="openvino", read=read, size_hint="the IR leaves its input's height or width open")
SOURCE = E.source(FORMAT)
