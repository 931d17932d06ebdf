"""A fake ``tensorrt`` module for the GPU-free tests of perfkit's TensorRT backend.

It has only what perfkit calls, under the real names, as the real kind (method, property, enum
member) and with the real arity: tests/backends/test_tensorrt_bindings.py checks that every public
name here exists in NVIDIA's real bindings of TensorRT 10 and 11, so the fake cannot invent the API
the code assumes. Names starting with ``_`` are the fake's own controls: the outcome of each call a
test wants (``_parse_ok``, ``_profile_index`` ...) and ``_calls``, the calls in order.

Load a fresh copy per test (the ``fake_trt`` fixture in tests/conftest.py).
"""

from __future__ import annotations

__version__ = "10.16.1.11"

_calls: list[tuple] = []


def _log(*call) -> None:
    _calls.append(call)


class _Member(int):
    """An enum member: an int with a name, printed as ``Enum.NAME`` (as pybind11 prints them)."""

    def __new__(cls, owner: str, name: str, value: int):
        member = super().__new__(cls, value)
        member.name, member._owner = name, owner
        return member

    def __str__(self):
        return f"{self._owner}.{self.name}"

    __repr__ = __str__


def _enum(name: str, **members: int) -> type:
    cls = type(name, (), {})
    for member, value in members.items():
        setattr(cls, member, _Member(name, member, value))
    return cls


def _settable(name: str, default, logged=lambda value: value) -> property:
    """A property perfkit sets: each value set is logged as ``(name, logged(value))``."""

    def get(self):
        return vars(self).get("_" + name, default)

    def set_(self, value):
        _log(name, logged(value))
        vars(self)["_" + name] = value

    return property(get, set_)


NetworkDefinitionCreationFlag = _enum("NetworkDefinitionCreationFlag", STRONGLY_TYPED=1)  # 0 in TensorRT 11
BuilderFlag = _enum("BuilderFlag", TF32=6)
MemoryPoolType = _enum("MemoryPoolType", WORKSPACE=0)
DataType = _enum("DataType", FLOAT=0, HALF=1)
TensorIOMode = _enum("TensorIOMode", NONE=0, INPUT=1, OUTPUT=2)
ErrorCode = _enum("ErrorCode", INVALID_GRAPH=5, UNSUPPORTED_NODE=8)
ProfilingVerbosity = _enum("ProfilingVerbosity", LAYER_NAMES_ONLY=0, NONE=1, DETAILED=2)
LayerInformationFormat = _enum("LayerInformationFormat", ONELINE=0, JSON=1)


class ILogger:
    Severity = _enum("Severity", INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)

    def __init__(self):
        pass

    def log(self, severity, msg):
        pass


class IHostMemory(bytes):
    """The real one exposes the buffer protocol (bytes(...) and write_bytes work); so does bytes."""


class INetworkDefinition:
    pass


class ITimingCache:
    def __init__(self, blob: bytes = b""):
        self._blob = bytes(blob)

    def serialize(self):
        return IHostMemory(self._blob + b"+tuned")


class IOptimizationProfile:
    def set_shape(self, input, min, opt, max):  # noqa: A002 (the real parameter names)
        _log("set_shape", input, tuple(min), tuple(opt), tuple(max))


class IBuilderConfig:
    _profile_index = 0  # what add_optimization_profile returns (< 0: rejected)
    _refuse_caches: tuple[bytes, ...] = ()  # timing caches set_timing_cache refuses
    _unreadable_caches: tuple[bytes, ...] = ()  # blobs create_timing_cache returns None for

    def __init__(self):
        self._cache = None

    def clear_flag(self, flag):
        _log("clear_flag", flag)

    def set_memory_pool_limit(self, pool, pool_size):
        _log("set_memory_pool_limit", pool, pool_size)

    def add_optimization_profile(self, profile):
        _log("add_optimization_profile")
        return self._profile_index

    def create_timing_cache(self, serialized_timing_cache):
        blob = bytes(serialized_timing_cache)
        return None if blob in self._unreadable_caches else ITimingCache(blob)

    def set_timing_cache(self, cache, ignore_mismatch):
        _log("set_timing_cache", cache._blob, ignore_mismatch)
        if cache._blob in self._refuse_caches:
            return False
        self._cache = cache
        return True

    def get_timing_cache(self):
        return self._cache

    profiling_verbosity = _settable("profiling_verbosity", ProfilingVerbosity.LAYER_NAMES_ONLY)  # TensorRT's default


class Builder:
    _engine: bytes | None = b"fake-engine"  # what build_serialized_network returns (None: the build failed)

    def __init__(self, logger):
        self._logger = logger

    def create_network(self, flags=0):
        _log("create_network", flags)
        return INetworkDefinition()

    def create_builder_config(self):
        return IBuilderConfig()

    def create_optimization_profile(self):
        return IOptimizationProfile()

    def build_serialized_network(self, network, config):
        if self._engine is None:
            self._logger.log(ILogger.Severity.ERROR, "fake build error")
            return None
        return IHostMemory(self._engine)


class ParserError:
    def __init__(self, code, desc, node=-1, node_name="", node_operator=""):
        self._v = (code, desc, node, node_name, node_operator)

    def code(self):
        return self._v[0]

    def desc(self):
        return self._v[1]

    def node(self):
        return self._v[2]

    def node_name(self):
        return self._v[3]

    def node_operator(self):
        return self._v[4]


class OnnxParser:
    _errors: list = []  # ParserErrors; any makes parse_from_file fail

    def __init__(self, network, logger):
        pass

    def parse_from_file(self, model):
        _log("parse_from_file", model)
        return not self._errors

    @property
    def num_errors(self):
        return len(self._errors)

    def get_error(self, index):
        return self._errors[index]


class IProfiler:
    def __init__(self):
        pass

    def report_layer_time(self, layer_name, ms):
        pass


class EngineInspector:
    def __init__(self, information):
        self._information = information

    def get_engine_information(self, format):  # noqa: A002 (the real parameter name)
        _log("get_engine_information", format)
        return self._information


class IExecutionContext:
    _refuse: tuple[str, ...] = ()  # methods that return False (TensorRT's "no")
    # what one run's profile reports: (layer name, ms), in the engine's order
    _layer_ms: list[tuple[str, float]] = [("node_Conv_0", 0.5), ("node_relu", 0.25)]

    def __init__(self):
        self._shape = None

    profiler = _settable("profiler", None, lambda value: None if value is None else "set")
    enqueue_emits_profile = _settable("enqueue_emits_profile", True)  # TensorRT's default

    def report_to_profiler(self):
        _log("report_to_profiler")
        if "report_to_profiler" in self._refuse:
            return False
        self._report()
        return True

    def _report(self):
        if self.profiler is not None:
            for name, ms in self._layer_ms:
                self.profiler.report_layer_time(name, ms)

    def set_optimization_profile_async(self, profile_index, stream_handle):
        _log("set_optimization_profile_async", profile_index, stream_handle)
        return "set_optimization_profile_async" not in self._refuse

    def set_input_shape(self, name, shape):
        self._shape = tuple(shape)
        return "set_input_shape" not in self._refuse

    def get_tensor_shape(self, name):
        return (self._shape[0], 10)

    def set_tensor_address(self, name, memory):
        _log("set_tensor_address", name)
        return "set_tensor_address" not in self._refuse

    def execute_async_v3(self, stream_handle):
        _log("execute_async_v3", stream_handle)
        if self.enqueue_emits_profile:  # TensorRT's default: an enqueue with a profiler attached reports (synchronously)
            self._report()
        return "execute_async_v3" not in self._refuse


class ICudaEngine:
    _dtypes = {"input": DataType.FLOAT, "logits": DataType.FLOAT}
    _context = True  # False: create_execution_context returns None
    # the engine's I/O tensors: name -> (mode, shape; -1 a dynamic dimension), and each profile's
    # (min, opt, max) input shapes
    _tensors = {"input": (TensorIOMode.INPUT, (-1, 3, 32, 32)), "logits": (TensorIOMode.OUTPUT, (-1, 10))}
    _profiles = [((1, 3, 32, 32), (8, 3, 32, 32), (64, 3, 32, 32))]

    def get_tensor_dtype(self, name):
        return self._dtypes[name]

    @property
    def num_io_tensors(self):
        return len(self._tensors)

    def get_tensor_name(self, index):
        return list(self._tensors)[index]

    def get_tensor_mode(self, name):
        return self._tensors[name][0]

    def get_tensor_shape(self, name):
        return self._tensors[name][1]

    @property
    def num_optimization_profiles(self):
        return len(self._profiles)

    def get_tensor_profile_shape(self, name, profile_index):
        return list(self._profiles[profile_index])

    def create_execution_context(self):
        return IExecutionContext() if self._context else None

    # what the engine inspector says (get_engine_information's JSON); None: create_engine_inspector gives None
    _information: str | None = '{"Layers": ["node_Conv_0", "node_relu"], "Bindings": ["input", "logits"]}'

    def create_engine_inspector(self):
        return None if self._information is None else EngineInspector(self._information)

    @property
    def device_memory_size_v2(self):
        return 1 << 20


class Runtime:
    _engine = True  # False: deserialize_cuda_engine returns None

    def __init__(self, logger):
        pass

    def deserialize_cuda_engine(self, serialized_engine):
        _log("deserialize_cuda_engine", bytes(serialized_engine))
        return ICudaEngine() if self._engine else None
