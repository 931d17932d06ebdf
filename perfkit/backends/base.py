"""What a backend is: one object per runtime, and the ``Runner`` every backend implements.

A ``Backend`` declares everything the rest of perfkit needs to know about a runtime: its name, how
to export its artifact (or which other backend's artifact it runs, or none), its ``Runner`` class,
its options with their CLI spec and defaults, the precisions it supports on each device, the pip
extra that provides it and how to tell whether it is available, and the library versions that key
its artifact cache. Every per-runtime table in perfkit (CLI options, ``perfkit run``'s defaults,
dependency hints, the environment's library list, cache keys) is derived from these objects.

``Runner``: lifecycle in the base class, backend work in hooks (Polygraphy's pattern).
``__enter__`` loads (session, engine, module), ``infer`` validates the input against what the
artifact accepts and then calls the backend, ``__exit__`` releases. Runners never time themselves —
only ``perfkit.profiler`` times — except a ``self_timed`` runner (the native C++ runner, whose calls
happen in another process), which says so.

``Runner.offline_session(k, x, cores)`` is the Offline scenario's hook: the runtime's own way of
keeping ``k`` requests in flight at once (OpenVINO's AsyncInferQueue, one ONNX Runtime session per
thread, TensorRT contexts on their own streams; by default ``k`` Python threads calling ``infer``).
It returns an ``OfflineSession`` that ``perfkit.profiler.scenarios.offline`` drives and times.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from perfkit.device import device_type, on_device, pin_tf32
from perfkit.errors import ArtifactError, InputError, PerfkitError, UsageError, pip_install
from perfkit.vocab import BatchRange, Precision
from perfkit.zoo.spec import (  # the forms: backends name them from here
    AOTI_PACKAGE, ONNX_FILE, OPENVINO_IR, PYTORCH, TENSORRT_ENGINE, TORCHSCRIPT_FILE, ModelSpec,
)

EXPORT, RUN = "export", "run"  # option stages: part of the artifact (its cache key) or of the runner


@dataclass(frozen=True)
class Option:
    """One backend option, with its command-line spec.

    Two backends may declare the same option name (onnx and tensorrt both take ``opset``): the
    registry checks that they agree on default and type, and the CLI shows it once.
    """

    name: str
    default: Any
    help: str
    stage: str = EXPORT
    type: Callable[[str], Any] | None = None  # None: bool options are flags, others str
    precisions: frozenset | None = None  # the precisions it applies to (None: all); others never see it
    cli: bool = True  # False: set through a shared command-line group (calibration), not a flag of its own
    key: Callable[[Any], Any] | None = None  # its JSON form in cache keys and manifests (None: the value)

    def applies(self, precision: Precision | str | None) -> bool:
        """Whether it applies at ``precision`` (None: only the options of every precision do)."""
        return self.precisions is None or (precision is not None and Precision(precision) in self.precisions)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def __post_init__(self):
        if self.stage not in (EXPORT, RUN):
            raise ValueError(f"option {self.name}: stage must be {EXPORT!r} or {RUN!r}")


# What a model is given as (``ModelSpec.form``), in words.
FORMS = {PYTORCH: "a PyTorch module", ONNX_FILE: "an ONNX file", OPENVINO_IR: "an OpenVINO IR",
         TORCHSCRIPT_FILE: "a TorchScript file", AOTI_PACKAGE: "an AOTInductor package",
         TENSORRT_ENGINE: "a TensorRT engine"}

ENGINE_FORMS = frozenset(FORMS) - {PYTORCH, ONNX_FILE}  # engines someone built, each run by its own runtime

CPU_FLOAT = frozenset({Precision.FP32, Precision.FP16, Precision.BF16})
INT8_ONLY = frozenset({Precision.INT8})


def _calibration_key(value):
    from perfkit.data.calibration import calibration_key

    return calibration_key(value)


# The calibration set of an int8 artifact (a ``perfkit.data.calibration.CalibrationSet``): an export
# option of every backend that builds int8, so that it keys the cache and lands in the manifest. Its
# command-line form is the shared --calib/--calib-samples/--calib-method group (cli/options.py).
CALIBRATION = Option("calibration", None, "int8: the calibration set (--calib, --calib-samples, --calib-method)",
                     stage=EXPORT, precisions=INT8_ONLY, cli=False, key=_calibration_key)

# The ONNX nodes an int8 artifact leaves in float (ONNX Runtime's ``nodes_to_exclude``): chosen by
# ``perfkit validate``'s mixed-precision search (``perfkit.accuracy.mixed``), never typed by hand. An
# export option of every backend whose int8 is built from the QDQ ONNX graph (onnx, openvino, tensorrt),
# so that the set keys their caches: a mixed artifact never answers for a full int8 one.
FLOAT_LAYERS = Option("float_layers", (), "int8: ONNX nodes left in float (validate's --min-relative search)",
                      stage=EXPORT, precisions=INT8_ONLY, cli=False, key=lambda names: sorted(names or ()))


@dataclass(frozen=True, eq=False)  # one object per runtime: compared and hashed by identity
class Backend:
    """A runtime perfkit can export to, run and measure. See the module docstring.

    Attributes:
        name: the runtime's name on the command line and in records (``onnx``).
        summary: one line for ``--help`` and the README.
        runner: the ``Runner`` subclass.
        export: builds the artifact into ``request.out_dir`` and returns its main file's name;
            None for a backend without an artifact of its own.
        artifact_from: the backend whose artifact this one runs (native runs torchscript's).
        options: the backend's options (export-stage ones key the artifact cache).
        precisions: device type → precisions supported there.
        extra: the pip extra that provides it (None: a core dependency).
        extra_index_url: a package index the extra's wheels come from besides PyPI (TensorRT's
            libraries are on pypi.nvidia.com), named in every install hint.
        requires: import names that must be importable (checked without importing them);
            ``a|b`` is satisfied by either (TensorRT imports as ``tensorrt`` or ``tensorrt_bindings``).
        probe: an extra availability check, ``probe(device) -> None or the reason it is unavailable``.
        cache_libraries: distributions whose versions key the artifact cache (the exporter's).
        quant_libraries: distributions whose versions also key int8 artifacts (the quantizer's).
        runtime_libraries: distributions the runner uses (recorded in the environment).
        device_specific: the artifact is compiled for the device it is built on (AOTI, TensorRT).
        default_in_run: part of ``perfkit run``'s default list where available.
        run_precisions: the precisions ``perfkit run``'s automatic plan (``--precision auto``) tries it at,
            per device type or for all (None: every one it supports); a reduced precision is measured only
            where the hardware accelerates it (``perfkit.env.accelerated``). Asked for explicitly, it
            runs every precision it supports.
        reference: the runtime others are compared with (eager).
        starts_from: the forms of model it runs (``ModelSpec.form``): ``pytorch`` (a module it
            exports or runs), ``onnx`` (an ONNX file it runs as it is), an engine of its own format
            (run as it was built). ``accepts`` says why not.
        layer_profiler: the module of its per-layer profiler (``perfkit profile --layers``: a module of
            ``perfkit.profiler.layers`` with ``profile(runner, x, runs, counts)``); None: it has none, and
            ``no_layer_profiler`` says why.
    """

    name: str
    summary: str
    runner: type["Runner"]
    export: Callable[..., str] | None = None
    artifact_from: str | None = None
    options: tuple[Option, ...] = ()
    precisions: Mapping[str, frozenset] = field(default_factory=lambda: {"cpu": frozenset({Precision.FP32})})
    extra: str | None = None
    extra_index_url: str | None = None
    requires: tuple[str, ...] = ()
    probe: Callable[[str], str | None] | None = None
    cache_libraries: tuple[str, ...] = ("torch",)
    quant_libraries: tuple[str, ...] = ()
    runtime_libraries: tuple[str, ...] = ("torch",)
    device_specific: bool = False
    default_in_run: bool = True
    run_precisions: frozenset | Mapping[str, frozenset] | None = None
    reference: bool = False
    starts_from: frozenset = frozenset({PYTORCH})
    layer_profiler: str | None = None
    no_layer_profiler: str = ""

    @property
    def exports(self) -> bool:
        return self.export is not None

    @property
    def needs_artifact(self) -> bool:
        return self.export is not None or self.artifact_from is not None

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(self.precisions)

    def supported(self, device: str) -> frozenset:
        return frozenset(self.precisions.get(device_type(device), ()))

    @property
    def libraries(self) -> tuple[str, ...]:
        """Every distribution this backend exports, quantizes or runs with (for the environment)."""
        return tuple(dict.fromkeys((*self.cache_libraries, *self.quant_libraries, *self.runtime_libraries)))

    def libraries_for(self, precision: Precision | str) -> tuple[str, ...]:
        """Distributions whose versions key an artifact of ``precision``."""
        extra = self.quant_libraries if Precision(precision) is Precision.INT8 else ()
        return tuple(dict.fromkeys((*self.cache_libraries, *extra)))

    def runs(self, precision: Precision | str, device: str, *, automatic: bool = False) -> bool:
        """Whether this backend runs ``precision`` on ``device`` (``check`` says why not); with
        ``automatic``, also whether ``perfkit run``'s automatic plan measures it there."""
        precision = Precision(precision)
        if automatic and self.left_out(precision, device) is not None:
            return False
        return precision in self.supported(device)

    def left_out(self, precision: Precision | str, device: str) -> str | None:
        """Why ``perfkit run``'s automatic plan does not measure this backend at ``precision`` on
        ``device`` although it runs it (None: it does, or it cannot run it at all)."""
        from perfkit.env import ACCELERATING, accelerated

        precision = Precision(precision)
        if precision not in self.supported(device):
            return None
        planned = self.run_precisions
        if isinstance(planned, Mapping):
            planned = planned.get(device_type(device))
        if planned is not None and precision not in planned:
            return "not in its automatic plan (ask for it with --precision)"
        if precision is not Precision.FP32 and precision.value not in accelerated(device):
            features = "/".join(ACCELERATING.get(precision.value, ()))
            return f"this {device_type(device).upper()} does not accelerate {precision} (none of {features})"
        return None

    def check(self, precision: Precision | str, device: str) -> Precision:
        """The precision, if this backend runs it on ``device``; else a UsageError naming what it supports."""
        precision = Precision(precision)
        dtype = device_type(device)
        if dtype not in self.precisions:
            raise UsageError(f"{self.name} does not run on {dtype}; it runs on {', '.join(self.devices)}")
        if precision not in self.precisions[dtype]:
            names = ", ".join(p.value for p in Precision if p in self.precisions[dtype])
            raise UsageError(f"{self.name} on {dtype} supports {names}, not {precision}")
        return precision

    def unavailable(self, device: str) -> str | None:
        """None when this backend can run on ``device`` here, else why not (one line)."""
        dtype = device_type(device)
        if dtype not in self.precisions:
            return f"{self.name} does not run on {dtype}"
        for module in self.requires:
            if all(importlib.util.find_spec(m.split(".")[0]) is None for m in module.split("|")):
                how = pip_install(self.extra, self.extra_index_url) if self.extra else "reinstall perfkit"
                return f"{self.name} needs '{module.split('|')[0]}' ({how})"
        return self.probe(device) if self.probe is not None else None

    def accepts(self, spec: ModelSpec) -> str | None:
        """None when this runtime can run ``spec`` (a model of a form it starts from), else why not (one
        line): a PyTorch runtime cannot run an ONNX file. Shown where runtimes are listed as not run."""
        if spec.form in self.starts_from:
            return None
        given = FORMS.get(spec.form, f"a {spec.form} model")
        if spec.engine:
            return f"{given} runs in its own runtime only"
        if self.starts_from - ENGINE_FORMS == {PYTORCH}:  # a PyTorch runtime (and the runtime of its engine format)
            return f"{given} has no PyTorch module: PyTorch runtimes cannot run it"
        return f"{self.name} starts from {' or '.join(FORMS[f] for f in sorted(self.starts_from))}, not {given}"

    def options_for(self, given: Mapping[str, Any], stage: str, precision: Precision | str | None = None) -> dict:
        """This backend's options of ``stage`` that apply at ``precision`` (None: those of every
        precision): its defaults, overridden by the ``given`` ones it declares."""
        return {o.name: (given[o.name] if given.get(o.name) is not None else o.default)
                for o in self.options if o.stage == stage and o.applies(precision)}

    def export_options(self, given: Mapping[str, Any], precision: Precision | str) -> dict:
        """The options that shape the artifact at ``precision`` (they key the artifact cache)."""
        return self.options_for(given, EXPORT, precision)

    def keyed(self, options: Mapping[str, Any]) -> dict:
        """``options`` in the JSON form that keys the artifact cache and is written to the manifest."""
        forms = {o.name: o.key for o in self.options if o.key is not None}
        return {k: (forms[k](v) if k in forms else v) for k, v in options.items()}


# -- the Offline scenario's hook ------------------------------------------------------------------

THREADS, QUEUE, SERIAL = "threads", "queue", "serial"  # how a runner keeps k requests in flight


@dataclass
class OfflineSession:
    """``requests`` requests kept in flight by a runtime's own mechanism, for the profiler to drive.

    Two shapes, one of them set:

    - thread-driven (``call``): the profiler runs ``requests`` threads; thread ``i`` calls ``call(i)``
      back to back, each call one whole request that returns when its output is ready (the runtime
      must release the GIL while it computes, or the threads take turns);
    - queue-driven (``submit`` and ``wait_all``): one thread calls ``submit()``, which starts a
      request on a free slot and blocks while all ``requests`` are busy; ``wait_all()`` returns when
      every started request has finished.

    ``config`` is the configuration it runs with (recorded); ``close`` releases what it holds;
    ``warm``: it only calls an entered runner that has just run this batch, so nothing is left to
    initialise and the profiler skips the warm-up round (new sessions or compiled models need one).
    Sessions never time anything: ``perfkit.profiler.scenarios.offline`` does.
    """

    requests: int
    threads_per_request: int | None
    mechanism: str
    config: dict
    call: Callable[[int], object] | None = None
    submit: Callable[[], object] | None = None
    wait_all: Callable[[], object] | None = None
    close: Callable[[], None] | None = None
    warm: bool = False

    def __post_init__(self):
        if (self.call is None) == (self.submit is None or self.wait_all is None):
            raise ValueError("an OfflineSession is either thread-driven (call) or queue-driven (submit, wait_all)")

    @property
    def threaded(self) -> bool:
        return self.call is not None

    def __enter__(self) -> "OfflineSession":
        return self

    def __exit__(self, *exc) -> None:
        if self.close is not None:
            self.close()


# -- runners --------------------------------------------------------------------------------------


class Runner(ABC):
    """Runs one model in one runtime at one precision on one device.

    ``infer`` takes float32 NCHW (on ``self.device`` or the CPU; it is moved) and returns float32
    logits ``(N, num_classes)`` on ``self.device``.
    """

    name: str = ""  # the backend's name, set by each subclass
    self_timed = False  # True: the runtime times itself (``time_self``); the profiler says so
    torch_runtime = False  # True: computes on torch's thread pool and CUDA caching allocator
    out_of_process = False  # True: runs in a process of its own, which reports its own memory (``own_memory``)
    # The Offline scenario: THREADS (k Python threads calling ``infer``; the default), QUEUE (the
    # runtime's own asynchronous queue), SERIAL (concurrent calls take turns: k = 1 only, and
    # ``offline_note`` says why) or None (not measured; ``offline_note`` says why).
    offline_mechanism: str | None = THREADS
    offline_note: str = ""

    def __init__(self, spec: ModelSpec, *, precision: Precision | str = Precision.FP32, device: str = "cpu",
                 batch: BatchRange = BatchRange(), options: Mapping[str, Any] | None = None,
                 threads: int | None = None, artifact=None):
        self.spec = spec
        self.precision = Precision(precision)
        self.device = torch.device(device)
        self.batch = batch
        self.options = dict(options or {})
        self.threads = threads
        self.artifact = artifact
        self._active = False

    @property
    def label(self) -> str:
        return f"{self.name}/{self.precision}/{self.device}"

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> "Runner":
        if self._active:
            raise PerfkitError(f"runner {self.label} is already active")
        pin_tf32(False)
        self._saved_threads = torch.get_num_threads()
        if self.threads and self.torch_runtime:
            torch.set_num_threads(self.threads)
        try:
            with on_device(self.device):  # runtimes that load onto "the current device" (TensorRT) get this one
                self._load()
        except BaseException:
            torch.set_num_threads(self._saved_threads)
            raise
        self._active = True
        return self

    def __exit__(self, *exc) -> None:
        self._active = False
        try:
            self._release()
        finally:
            torch.set_num_threads(self._saved_threads)  # the thread count is this runner's, not the caller's

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        if not self._active:
            raise PerfkitError(f"runner {self.label} used outside its `with` block")
        self.check_input(x)
        if self.device.type != "cuda":
            return self._infer(x.to(self.device))
        # cuda:N made current: TensorRT and ONNX Runtime enqueue on the current device's context,
        # whatever device the caller (check, validate) had current.
        with on_device(self.device):
            return self._infer(x.to(self.device, non_blocking=True))

    def infer_all(self, x: torch.Tensor) -> torch.Tensor:
        """``infer`` on any number of inputs: in pieces of at most the artifact's largest batch, a
        last piece below its smallest batch padded with zeros (those outputs dropped). A model with a
        fixed batch (an ONNX file whose batch dimension is a number) takes that batch only, so a set
        of inputs that is not a multiple of it still gets one logit row per input. Not for timing."""
        n = x.shape[0]
        if self.batch.contains(n):
            return self.infer(x)
        out = []
        for start in range(0, n, self.batch.max):
            piece = x[start:start + self.batch.max]
            short = self.batch.min - piece.shape[0]
            if short > 0:
                piece = torch.cat([piece, piece.new_zeros((short, *piece.shape[1:]))])
            out.append(self.infer(piece)[:piece.shape[0] - max(short, 0)])
        return torch.cat(out)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise InputError(f"{self.label}: expected a torch.Tensor, got {type(x).__name__}")
        if x.dtype != torch.float32:
            raise InputError(f"{self.label}: expected float32 input, got {x.dtype}")
        if x.dim() != 4 or tuple(x.shape[1:]) != tuple(self.spec.input_size):
            raise InputError(f"{self.label}: expected input (N, {', '.join(map(str, self.spec.input_size))}), "
                             f"got {tuple(x.shape)}")
        if not self.batch.contains(x.shape[0]):
            raise InputError(f"{self.label}: batch {x.shape[0]} is outside the artifact's range "
                             f"{self.batch.min}..{self.batch.max} (re-export with a wider --max-batch)")

    def config(self) -> dict:
        """The configuration this runner actually runs with (recorded with every timing), raw values."""
        return {}

    def engine_device_bytes(self) -> int | None:
        """Device memory the runtime says the loaded model needs beyond its weights (TensorRT's
        engine); None where the runtime does not say."""
        return None

    @property
    def calibration(self) -> str | None:
        """What the int8 artifact this runner runs was calibrated on (one line), or None."""
        manifest = self.artifact.manifest if self.artifact is not None else {}
        return (manifest.get("calibration") or {}).get("description")

    def offline_session(self, k: int, x: torch.Tensor, cores: int) -> OfflineSession:
        """``k`` requests in flight at once, each on its own copy of ``x`` (an entered runner).

        The default: ``k`` Python threads calling ``infer``. A torch runtime's intra-op pool is
        process-wide, so it gets ``cores // k`` threads (restored on close) and the ``k`` callers share
        it; on CUDA each caller has a stream of its own. Backends with a concurrency mechanism of their
        own override this.
        """
        if k > 1 and self.offline_mechanism != THREADS:
            raise PerfkitError(f"{self.label} runs one request at a time in the Offline scenario"
                               + (f": {self.offline_note}" if self.offline_note else ""))
        inputs = [x.clone() for _ in range(k)]
        saved = torch.get_num_threads()
        threads = max(1, cores // k) if self.torch_runtime else None
        if threads:
            torch.set_num_threads(threads)
        streams = [torch.cuda.Stream(self.device) for _ in range(k)] if self.device.type == "cuda" else None

        def call(i: int) -> None:
            if streams is None:
                self.infer(inputs[i])
                return
            with torch.cuda.stream(streams[i]):
                self.infer(inputs[i])
            streams[i].synchronize()

        how = f"{k} Python thread(s) calling infer" + (f", torch intra-op threads {threads} (one process-wide pool)"
                                                       if threads else "")
        if streams:
            how += ", a CUDA stream per thread"
        return OfflineSession(k, threads, how, {**self.config(), "requests": k}, call=call,
                              close=lambda: torch.set_num_threads(saved), warm=True)

    # -- hooks --------------------------------------------------------------------------------

    @abstractmethod
    def _load(self) -> None: ...

    @abstractmethod
    def _infer(self, x: torch.Tensor) -> torch.Tensor: ...

    def _release(self) -> None:
        pass


class ArtifactRunner(Runner):
    """A runner over an exported artifact: its precision and batch range come from the manifest,
    and it refuses an artifact of another model, weights, input size or device."""

    def __init__(self, spec: ModelSpec, *, artifact, device: str = "cpu", **kwargs):
        kwargs.pop("precision", None)
        kwargs.pop("batch", None)
        super().__init__(spec, precision=artifact.precision, device=device, batch=artifact.batch,
                         artifact=artifact, **kwargs)
        model = artifact.manifest["model"]
        shape = tuple(artifact.manifest["inputs"][0]["shape"][1:])
        if (model["identity"], shape) != (spec.identity, spec.input_size):
            raise ArtifactError(
                f"{artifact.path} holds {model['name']} (identity {model['identity']}, {model['weights']['identity']}, "
                f"input {shape}), not {spec.name} (identity {spec.identity}, {spec.weights.identity}, input "
                f"{spec.input_size})")
        self.input_name = artifact.manifest["inputs"][0]["name"]  # the graph's own (a user's ONNX file names its own)
        self.output_name = artifact.manifest["outputs"][0]["name"]
        if artifact.device not in ("any", self.device.type):
            raise ArtifactError(f"{artifact.path} was compiled for {artifact.device}, it cannot run on {self.device}")
        built, here = artifact.manifest.get("compiled_for", "any"), None
        if built != "any":
            from perfkit.artifacts import device_identity

            here = device_identity(str(self.device))
            if built != here:
                raise ArtifactError(f"{artifact.path} was compiled for {built}, not for this {here}; "
                                    "export it again on this machine (perfkit export --force)")
