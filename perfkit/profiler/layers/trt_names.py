"""TensorRT's layer names back to the ONNX nodes they ran (perfkit.profiler.layers.tensorrt times them).

TensorRT names a layer after the ONNX node it runs; the engine inspector of an engine built with
``ProfilingVerbosity.DETAILED`` also lists them in its ``Metadata`` as ``[ONNX Layer: <node>]``, which is
read first. From the name alone: a fusion ``node_a + node_b``, a pointwise fusion ``PWN(PWN(relu), add)``,
a layout change ``Reformatting CopyNode for Input Tensor 0 to <layer>`` (counts for ``<layer>``: the layer
it feeds), a Myelin region ``{ForeignNode[first...last]}`` (the graph's nodes from first to last in graph
order), a weight constant named after its initializer (counts for the node reading it). A name none of
whose parts is a node of the graph (``(Unnamed Layer* 3) [Shuffle]``, the network input's reformat) maps to
no node: an unmapped row.
"""

from __future__ import annotations

import re

from perfkit.profiler.layers import LayerTime, onnx_graph

_ONNX_LAYER = re.compile(r"\[ONNX Layer: (?P<node>[^\]]+)\]")
_REFORMAT = re.compile(r"^Reformatting CopyNode for (?:Input|Output) Tensor \d+ to (?P<layer>.+)$")
_FOREIGN = re.compile(r"^\{?ForeignNode\[(?P<first>.+?)\.\.\.(?P<last>.+)\]\}?$")
_PWN = re.compile(r"^PWN\((?P<inner>.*)\)$")


def layers(graph: onnx_graph.GraphMap | None, info: dict[str, dict], ms: dict[str, float], runs: int) -> list[LayerTime]:
    """Each layer's mean ms per run, with its type and the modules of the graph nodes it ran."""
    ran = {name: nodes_of(graph, name, str(info.get(name, {}).get("Metadata") or "")) if graph else []
           for name in ms}
    modules = graph.layer_modules(ran) if graph else {}
    return [LayerTime(name, _op_type(graph, info.get(name, {}), ran[name]), total / runs, modules.get(name, ()))
            for name, total in ms.items()]


def _op_type(graph: onnx_graph.GraphMap | None, entry: dict, nodes: list[str]) -> str:
    """The inspector's LayerType (``CaskConvolution``, ``PointWiseV2``, ``Reformat``), else the ONNX ops it ran."""
    if entry.get("LayerType"):
        return str(entry["LayerType"])
    ops = "+".join(dict.fromkeys(graph.op_types[n] for n in nodes)) if graph else ""
    return ops or "?"


def nodes_of(graph: onnx_graph.GraphMap, name: str, metadata: str = "") -> list[str]:
    """The ONNX nodes TensorRT layer ``name`` ran (its inspector ``metadata`` first), each once, in order."""
    named = [graph.node(n.strip()) for n in _ONNX_LAYER.findall(metadata)]
    found = [n for n in named if n] or _from_name(graph, name.strip())
    return list(dict.fromkeys(found))


def _from_name(graph: onnx_graph.GraphMap, name: str) -> list[str]:
    if (m := _REFORMAT.match(name)) is not None:
        return _from_name(graph, m["layer"])
    if (m := _FOREIGN.match(name)) is not None:
        order = list(graph.modules)
        first, last = graph.node(m["first"]), graph.node(m["last"])
        if first is None or last is None:
            return []
        return order[order.index(first):order.index(last) + 1]
    parts = _split(name, " + ")
    if len(parts) == 1 and (m := _PWN.match(name)) is not None:
        parts = _split(m["inner"], ", ")
    if parts != [name]:  # a fusion: each of its parts
        return [n for part in parts for n in _from_name(graph, part)]
    node = graph.node(name)
    if node is not None:
        return [node]
    return graph.consumers.get(name, [])[:1] if name in graph.parameters else []  # a weight: its reader


def _split(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside brackets (fused names nest: ``PWN(PWN(a, b), c)``)."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        if text[i] in "([{":
            depth += 1
        elif text[i] in ")]}":
            depth -= 1
        elif depth == 0 and text.startswith(sep, i):
            parts.append(text[start:i])
            start = i = i + len(sep)
            continue
        i += 1
    return [p.strip() for p in [*parts, text[start:]] if p.strip()]

