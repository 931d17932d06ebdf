"""The record schema: one row per measurement, raw numbers only, one typed schema per kind.

Metric keys carry their unit as a suffix (``latency_ms``, ``peak_bytes``, ``top1_correct``).
Provenance (model, runtime, precision, batch, weights, device) lives in columns, never in names.
Each kind lists the metrics an ok record must carry (``required``) and the ones it may carry
(``optional``); anything else is refused, so a producer, the report and a test fixture cannot drift
apart silently. Bump ``SCHEMA_VERSION`` when a kind's fields change; tests check every kind.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from perfkit.results import Kind, KindSchema, kind_of

# 3: complexity sizes in *_mib (were *_mb holding MiB), unrowed_params, onnx_*; precision (calibration,
# quantization, relative_top1); the Offline scenario's throughput kind
# 4: model records carry the model's identity, arch, reference runtime and checkpoint entry (model sources);
# latency and throughput carry other_cpu_pct and contended (other processes' CPU use while timing;
# None: not measured). Optional, so schema 3 records validate as they are.
# 5: model records of an engine someone built carry the model it is judged against (reference_model);
# SingleStream (latency) records keep every timed call's latency (``samples``, perfkit.profiler.samples)
# 6: complexity records carry MACs per module (macs_by_module, and each layer row's macs); the layers kind
# (perfkit profile --layers: per-layer time from each runtime's own profiler, mapped to the model's modules);
# int8 accuracy records may say which layers validate's --min-relative search left float (float_layers)
# and what it tried (mixed_int8). All optional, so schema 5 records validate as they are
SCHEMA_VERSION = 6


_schema = KindSchema.of


_CORE: dict[Kind, KindSchema] = {
    Kind.MODEL: _schema(
        "label source random_weights input_size num_classes preprocess",
        "identity arch reference_runtime reference_model weights_entry ref_weights ref_top1_pct ref_top5_pct "
        "ref_params ref_gmacs"),
    Kind.COMPLEXITY: _schema(
        "params trainable_params macs flops",
        "non_trainable_params input_size macs_by_op uncounted_ops macs_convention params_convention not_counted "
        "layers params_outside_rows unrowed_params input_mib forward_backward_mib params_mib total_mib "
        "memory_convention onnx_macs onnx_macs_by_op onnx_no_formula onnx_tolerance onnx_agrees macs_by_module"),
    Kind.EXPORT: _schema(
        "export_seconds artifact_bytes",
        "cached seconds sha256 artifact_path warnings batch_range options main_file compiled_for calibration "
        "calibration_set quantization"),
    Kind.PARITY: _schema(
        "samples max_abs_diff mean_abs_diff top1_agreement passed",
        "max_rel_diff cosine_min top5_overlap nonfinite within_tolerance atol rtol min_top1_agreement max_rel "
        "min_cosine constant_reference flipped_ids failures inputs calibration"),
    Kind.ACCURACY: _schema(
        "images top1_correct top5_correct top1_pct top5_pct",
        "dataset_images ref_top1_pct ref_top5_pct delta_top1_vs_eager_pp delta_top5_vs_eager_pp "
        "delta_top1_vs_ref_pp flips_vs_eager flipped_ids flipped_ids_file max_abs_diff_vs_eager "
        "mean_abs_diff_vs_eager nonfinite_logits crops limit layout dataset_identity labels_from transform "
        "transform_overrides unreadable unreadable_files complete seconds images_per_s random_weights runner "
        "real_images real_top1_correct real_top5_correct real_top1_pct real_top5_pct real_labels per_class "
        "relative_top1 reference calibration num_classes float_layers mixed_int8"),
    Kind.MEMORY: _schema(
        "peak_bytes method",
        "artifact_bytes engine_device_bytes rss_delta_bytes gpu_context_bytes nvml_delta_bytes "
        "process_peak_rss_bytes"),
    Kind.LAYERS: _schema(
        "source rows",
        "unavailable layers total_ms e2e_median_ms coverage runs split by_op_type mapping macs_convention"),
    Kind.TRAIN: _schema(
        "epoch train_loss train_acc val_loss val_acc epoch_seconds",
        "epochs train_seconds val_seconds images_per_s best_val_acc best_epoch dataset lr train_images "
        "val_images correct_val num_classes input_size world_size amp resumed total_seconds checkpoint log_path"),
}



class _Schemas(Mapping):
    """Every record kind's schema: perfkit's own steps', then each scenario's (its module declares its
    kind and schema; the scenario registry is loaded on first use)."""

    def _all(self) -> dict:
        from perfkit.profiler.scenarios import all_scenarios

        return {**_CORE, **{s.kind: s.schema for s in all_scenarios()}}

    def __getitem__(self, kind) -> KindSchema:
        found = _CORE.get(kind) or self._all().get(kind)
        if found is None:
            raise KeyError(kind)
        return found

    def __iter__(self):
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


SCHEMAS = _Schemas()
_SCALARS = (int, float, str, bool, type(None))


@dataclass
class Record:
    """One measurement. ``metrics`` holds numbers (and short strings such as a method name)."""

    kind: Kind
    model: str
    metrics: dict = field(default_factory=dict)
    runtime: str | None = None
    precision: str | None = None
    batch: int | None = None
    weights: str | None = None  # weights identity: enum name, file sha256, or "random:seed0"
    device: str | None = None  # cpu or cuda
    status: str = "ok"  # "ok" or "error"
    error: str | None = None
    env: dict = field(default_factory=dict)  # filled from the run when empty
    run_id: str | None = None
    created: float = field(default_factory=time.time)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self):
        self.kind = kind_of(self.kind)

    def validate(self) -> None:
        """Raise ``ValueError`` if the record breaks its kind's schema."""
        if self.status not in ("ok", "error"):
            raise ValueError(f"status must be 'ok' or 'error', got {self.status!r}")
        if self.status == "error" and not self.error:
            raise ValueError("an error record must say what went wrong")
        if not self.model or not isinstance(self.model, str):
            raise ValueError("record has no model")
        if not isinstance(self.metrics, dict):
            raise ValueError(f"metrics must be a mapping, got {type(self.metrics).__name__}")
        if self.kind not in SCHEMAS:
            raise ValueError(f"unknown record kind {str(self.kind)!r} (no step or scenario writes it)")
        schema = SCHEMAS[self.kind]
        unknown = sorted(set(self.metrics) - schema.permitted)
        if unknown and self.schema_version >= SCHEMA_VERSION:  # older records (baselines in git) stay readable
            raise ValueError(f"{self.kind} record has metrics its schema does not permit: {unknown}")
        for key, value in self.metrics.items():
            if isinstance(value, (list, dict)):
                continue  # small structured payloads (per-batch lists, flipped ids, configs) are allowed
            if not isinstance(value, _SCALARS):
                raise ValueError(f"metric {key!r} is {type(value).__name__}, not a raw number")
            if isinstance(value, float) and math.isnan(value) and self.status == "ok":
                raise ValueError(f"metric {key!r} is NaN in an ok record")
        if self.status == "ok":
            missing = schema.required - self.metrics.keys()
            if missing:
                raise ValueError(f"{self.kind} record lacks {sorted(missing)}")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["kind"] = str(self.kind)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "Record":
        if not isinstance(data, dict):
            raise ValueError(f"a record must be a JSON object, got {type(data).__name__}")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def key(self) -> tuple:
        """(kind, model, runtime, precision, batch, device): one planned measurement."""
        return (str(self.kind), self.model, self.runtime, self.precision, self.batch, self.device)
