"""ONNX through the dynamo exporter (``torch.onnx.export(..., dynamo=True)``) with a dynamic batch.

Weights go to an external data file beside the graph (``model.onnx.data``): the 2 GB protobuf
limit never bites, and the artifact's hash covers both files. fp16 precision gives an fp16 graph
with float32 input and output, the form a strongly typed TensorRT network builds from.
"""

from __future__ import annotations

import torch

from perfkit.deps import require
from perfkit.errors import ArtifactError
from perfkit.export.artifact import INPUT_NAME, OUTPUT_NAME, ExportContext

OPTIONS = {"opset": None}  # None: the exporter's default opset (recorded in the manifest)
LIBRARIES = ("torch", "onnx", "onnxscript")
MAIN_FILE = "model.onnx"
BATCH_DIM = "batch"


def device_specific(options: dict) -> bool:
    return False  # an ONNX graph runs anywhere; it is always exported on the CPU


def export(ctx: ExportContext) -> str:
    onnx = require("onnx")
    require("onnxscript")
    model = ctx.model()
    x = ctx.example_input()
    dynamic_shapes = ({0: torch.export.Dim(BATCH_DIM, min=ctx.batch.min, max=ctx.batch.max)},) if ctx.dynamic else None
    path = ctx.out_dir / MAIN_FILE
    torch.onnx.export(
        model, (x,), str(path), dynamo=True, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
        dynamic_shapes=dynamic_shapes, opset_version=ctx.options["opset"], external_data=True, verbose=False,
    )
    # The checker takes the path so that external data and >2 GB models are handled.
    onnx.checker.check_model(str(path))
    graph = onnx.load(str(path), load_external_data=False)
    batch_dim = input_batch_dim(graph)
    if ctx.dynamic and not batch_dim:
        raise ArtifactError(f"{path}: the exporter fixed the input's batch dimension; a dynamic batch was asked for "
                            f"({ctx.batch.min}..{ctx.batch.max})")
    ctx.info["onnx"] = {
        "opset": next((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), None),
        "ir_version": graph.ir_version,
        "input_batch_dim": batch_dim or None,
        "external_data": sorted(p.name for p in ctx.out_dir.iterdir() if p.name != MAIN_FILE),
    }
    return MAIN_FILE


def input_batch_dim(graph) -> str:
    """The symbolic name of the first input's batch dimension ('' when it is a fixed number)."""
    dim = graph.graph.input[0].type.tensor_type.shape.dim[0]
    return dim.dim_param if dim.HasField("dim_param") else ""
