"""ONNX Runtime runner: CPU provider, or the CUDA provider with I/O bound to torch tensors.

onnxruntime silently falls back to the CPU when a provider cannot start, so the runner checks that
the provider it asked for is the one the session has.
"""

from __future__ import annotations

import os

import torch

from perfkit.deps import require
from perfkit.errors import PerfkitError
from perfkit.formats import Format
from perfkit.runtime.base import ArtifactRunner

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def machine_cores() -> int:
    """Cores this process may run on (the container's share, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class OnnxRuntimeRunner(ArtifactRunner):
    format = Format.ONNX

    def __init__(self, spec, artifact, *, device: str = "cpu", threads: int | None = None):
        super().__init__(spec, artifact, device=device)
        self.threads = threads or machine_cores()
        self.session = None

    @property
    def provider(self) -> str:
        return CUDA if self.device.type == "cuda" else CPU

    def _load(self) -> None:
        ort = require("onnxruntime")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = self.threads
        options.log_severity_level = 3  # errors only; warnings about node placement are expected
        if self.provider == CUDA:
            gpu = torch.cuda.is_available()
            index = self.device.index if self.device.index is not None else (torch.cuda.current_device() if gpu else 0)
            self.device = torch.device("cuda", index)
            # TF32 pinned off like every other runtime; run on torch's current stream so that work
            # is ordered with the torch-owned input and output buffers.
            cuda_options = {"device_id": index, "use_tf32": 0}
            if gpu:
                cuda_options["user_compute_stream"] = str(torch.cuda.current_stream(self.device).cuda_stream)
            providers = [(CUDA, cuda_options)]
        else:
            providers = [CPU]
        if self.provider not in ort.get_available_providers():
            raise PerfkitError(f"onnxruntime has no {self.provider} here (available: {', '.join(ort.get_available_providers())}); "
                               "install onnxruntime-gpu for CUDA")
        session = ort.InferenceSession(str(self.artifact.path), options, providers=providers)
        active = session.get_providers()
        if active[0] != self.provider:
            raise PerfkitError(f"onnxruntime fell back to {active[0]} instead of {self.provider} for "
                               f"{self.artifact.path} (CUDA/cuDNN libraries missing?)")
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.output_name = session.get_outputs()[0].name

    def _infer(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        if self.provider == CPU:
            out = self.session.run([self.output_name], {self.input_name: x.numpy()})[0]
            return torch.from_numpy(out)
        import numpy as np

        out = torch.empty((x.shape[0], self.spec.num_classes), dtype=torch.float32, device=self.device)
        binding = self.session.io_binding()
        binding.bind_input(self.input_name, "cuda", self.device.index, np.float32, tuple(x.shape), x.data_ptr())
        binding.bind_output(self.output_name, "cuda", self.device.index, np.float32, tuple(out.shape), out.data_ptr())
        self.session.run_with_iobinding(binding)
        return out

    def _release(self) -> None:
        self.session = None
