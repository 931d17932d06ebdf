"""TensorRT runner: an execution context on torch's current CUDA stream, with torch-owned buffers.

NOT RUN HERE: written against the TensorRT 10/11 name-based API (``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``) on a machine with no GPU and no TensorRT.
"""

from __future__ import annotations

import torch

from perfkit.deps import require
from perfkit.errors import ArtifactError, PerfkitError
from perfkit.export.artifact import INPUT_NAME, OUTPUT_NAME
from perfkit.export.tensorrt import _logger, check_compatible, current_gpu
from perfkit.formats import Format
from perfkit.runtime.base import ArtifactRunner


class TensorRTRunner(ArtifactRunner):
    format = Format.TENSORRT

    def _load(self) -> None:
        trt = require("tensorrt")
        gpu = current_gpu(str(self.device))
        check_compatible(self.artifact.manifest, trt.__version__, gpu["gpu_name"], gpu["compute_capability"])
        if self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(self.device)  # TensorRT uses the current CUDA device
        self._logger = _logger(trt)
        self._runtime = trt.Runtime(self._logger)
        engine = self._runtime.deserialize_cuda_engine(self.artifact.path.read_bytes())
        if engine is None:
            raise ArtifactError(f"TensorRT could not deserialize {self.artifact.path}:\n" + "\n".join(self._logger.errors))
        self._engine = engine
        self._context = engine.create_execution_context()
        if self._context is None:
            raise PerfkitError(f"TensorRT could not create an execution context for {self.artifact.path}:\n"
                               + "\n".join(self._logger.errors))

    def _infer(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        ctx = self._context
        if not ctx.set_input_shape(INPUT_NAME, tuple(x.shape)):
            raise PerfkitError(f"TensorRT rejected input shape {tuple(x.shape)} for {self.artifact.path}")
        out = torch.empty(tuple(ctx.get_tensor_shape(OUTPUT_NAME)), dtype=torch.float32, device=self.device)
        ctx.set_tensor_address(INPUT_NAME, x.data_ptr())
        ctx.set_tensor_address(OUTPUT_NAME, out.data_ptr())
        # Enqueued on torch's stream: ordered after the copy that produced x and before whatever
        # reads `out`; the caching allocator keeps x alive for work queued on that stream.
        if not ctx.execute_async_v3(torch.cuda.current_stream(self.device).cuda_stream):
            raise PerfkitError(f"TensorRT execution failed for {self.artifact.path}:\n" + "\n".join(self._logger.errors))
        return out

    def _release(self) -> None:
        self._context = None
        self._engine = None
        self._runtime = None
