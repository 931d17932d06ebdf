"""Exporters (TorchScript, ONNX, AOTInductor, TensorRT) and the artifact cache."""

from perfkit.export.artifact import Artifact, artifacts_dir, ensure_artifact, load_artifact, verify

__all__ = ["Artifact", "artifacts_dir", "ensure_artifact", "load_artifact", "verify"]
