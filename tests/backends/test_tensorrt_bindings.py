"""perfkit's TensorRT calls, and the fake TensorRT of its unit tests, checked against NVIDIA's real
Python bindings of TensorRT 10 and 11 — without a GPU or TensorRT's libraries.

How: the PyPI wheels ``tensorrt-cu12-bindings`` (TensorRT 10) and ``tensorrt-cu13-bindings``
(TensorRT 11) hold the real pybind11 module ``tensorrt_bindings/tensorrt.so``. It links against
``libnvinfer.so.N``, ``libnvonnxparser.so.N`` and ``libnvinfer_plugin.so.N`` but imports only nine
C functions from them. The test compiles null stand-ins for those nine under the sonames the module
names, loads them (ctypes, by absolute path: the loader then matches the module's DT_NEEDED entries
by soname), imports the real bindings in a child interpreter (one version per process: both wheels
are the ``tensorrt_bindings`` package) and dumps every class, enum, method signature and property.
Nothing that needs the native library can run (``trt.Builder(logger)`` gets a null pointer).

Checked, for each version:
- perfkit's own TensorRT code (every module that calls ``import_tensorrt``), read with ``ast``: each
  ``trt.X``, each attribute of an object whose TensorRT type is known (from ``trt.X(...)``, from
  the real return types of the calls that made it, from ``tensorrt.X`` annotations) exists, and each
  call has an overload taking the arguments perfkit passes (count, keywords, known types), each
  assignment to an attribute of such an object is to a property the real class lets one set (with a
  value of its type when known: ``context.profiler = <an IProfiler>``). A member
  of only one version must be reached through ``getattr(obj, "name", default)``/``hasattr``. A call
  on an object of unknown type whose method name is a TensorRT one fails the test: annotate it.
- the fake TensorRT of the unit tests (tests/backends/fake_tensorrt.py) has only real names, as the
  real kind (method, property, enum member) and with a compatible arity.
- perfkit code on the real objects (its logger subclasses the real ``ILogger``, its layer profiler the
  real ``IProfiler``; ``import_tensorrt``
  finds the bindings without NVIDIA's ``tensorrt`` package) and behaviour no signature shows
  (a tuple is taken for ``Dims``, ``IHostMemory`` is a buffer, how enums print).

Network: the two wheels (1.3 MB each) are downloaded once with ``pip download`` (PyPI's JSON simple
API without pip) into pytest's cache folder; ``PERFKIT_TRT_BINDINGS_DIR`` points at a folder
holding them (or their unpacked ``<dist>-<version>/``) for offline runs. Without a reachable wheel
or a C compiler (or off Linux) every test here skips, saying which.
"""

from __future__ import annotations

import __future__
import ast
import hashlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import types
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # downloads on its first run, compiles stubs, starts two interpreters

# TensorRT major -> the bindings wheel checked (bump deliberately, with the extras' bounds in pyproject.toml)
WHEELS = {"10": ("tensorrt-cu12-bindings", "10.16.1.11"), "11": ("tensorrt-cu13-bindings", "11.4.0.106")}
IMPORT_NAME = "tensorrt_bindings"
ROOT = Path(__file__).resolve().parents[2]
PERFKIT = ROOT / "perfkit"
FAKE = Path(__file__).with_name("fake_tensorrt.py")
RETURN_ALIASES = {"nvonnxparser::IParserError": "tensorrt.ParserError"}  # a C++ name pybind11 prints


# == the real bindings ============================================================================


class Unreachable(Exception):
    pass


def _download(dist: str, version: str, dest: Path) -> None:
    """The wheel of ``dist==version`` for this interpreter into ``dest``: pip, else the index's JSON API."""
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                           "--disable-pip-version-check", "-d", str(dest), f"{dist}=={version}"],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode == 0:
        return
    pip_error = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    try:
        from packaging.tags import sys_tags
        from packaging.utils import parse_wheel_filename

        index = os.environ.get("PERFKIT_TRT_INDEX_URL", "https://pypi.org/simple").rstrip("/")
        req = urllib.request.Request(f"{index}/{dist}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            files = json.load(r)["files"]
        ours = {str(t) for t in sys_tags()}
        for f in files:
            if f["filename"].endswith(".whl"):
                _, ver, _, tags = parse_wheel_filename(f["filename"])
                if str(ver) == version and {str(t) for t in tags} & ours:
                    with urllib.request.urlopen(f["url"], timeout=300) as r:
                        data = r.read()
                    if hashlib.sha256(data).hexdigest() != f["hashes"]["sha256"]:
                        raise Unreachable(f"{f['filename']}: sha256 mismatch")
                    (dest / f["filename"]).write_bytes(data)
                    return
        raise Unreachable("no wheel for this interpreter and platform")
    except Exception as exc:
        raise Unreachable(f"pip download: {pip_error[0]}; JSON API: {exc}") from None


def _unpacked(dist: str, version: str, cache: Path) -> Path:
    """The folder holding ``tensorrt_bindings/`` of ``dist==version``, downloaded and unzipped once."""
    site = cache / f"{dist}-{version}"
    if (site / IMPORT_NAME / "tensorrt.so").is_file():
        return site
    cache.mkdir(parents=True, exist_ok=True)
    pattern = f"{dist.replace('-', '_')}-{version}-*.whl"
    if not list(cache.glob(pattern)):
        _download(dist, version, cache)
    staging = cache / f".{site.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(sorted(cache.glob(pattern))[-1]) as zf:
        zf.extractall(staging)
    assert (staging / IMPORT_NAME / "tensorrt.so").is_file(), f"{dist} {version}: the wheel's layout changed"
    shutil.rmtree(site, ignore_errors=True)
    os.replace(staging, site)
    return site


STUB_C = r"""
#include <stddef.h>
#include <stdint.h>
#define X __attribute__((visibility("default")))
X void *createInferBuilder_INTERNAL(void *l, int32_t v) { (void)l; (void)v; return NULL; }
X void *createInferRuntime_INTERNAL(void *l, int32_t v) { (void)l; (void)v; return NULL; }
X void *createInferRefitter_INTERNAL(void *e, void *l, int32_t v) { (void)e; (void)l; (void)v; return NULL; }
X void *getPluginRegistry(void) { return NULL; }
X void *getBuilderPluginRegistry(int32_t c) { (void)c; return NULL; }
X void *createNvOnnxParser_INTERNAL(void *n, void *l, int32_t v) { (void)n; (void)l; (void)v; return NULL; }
X void *createNvOnnxParserRefitter_INTERNAL(void *r, void *l, int32_t v) { (void)r; (void)l; (void)v; return NULL; }
X int getNvOnnxParserVersion(void) { return STUB_PARSER_VERSION; }
X _Bool initLibNvInferPlugins(void *l, const char *ns) { (void)l; (void)ns; return 0; }
"""
STUBBED = ("libnvinfer", "libnvinfer_plugin", "libnvonnxparser")


def _compiler() -> str | None:
    return next((shutil.which(c) for c in (os.environ.get("CC"), "cc", "gcc", "clang") if c and shutil.which(c)), None)


def _stubs(site: Path, out: Path, version: str) -> list[Path]:
    """The three null libraries, named as tensorrt.so's DT_NEEDED entries (read without readelf)."""
    blob = (site / IMPORT_NAME / "tensorrt.so").read_bytes()
    needed = {m.group(1).decode(): m.group(0).decode() for m in
              re.finditer(rb"(?<=\x00)(libnv(?:infer|onnxparser|infer_plugin))\.so\.\d+(?=\x00)", blob)}
    assert set(needed) == set(STUBBED), f"tensorrt.so needs {needed}: the set of libraries changed, update the stubs"
    out.mkdir(parents=True, exist_ok=True)
    (out / "stub.c").write_text(STUB_C)
    major, minor, patch = (int(x) for x in version.split(".")[:3])
    libs = []
    for soname in needed.values():
        proc = subprocess.run([_compiler(), "-shared", "-fPIC", "-O0", f"-DSTUB_PARSER_VERSION={major * 10000 + minor * 100 + patch}",
                               f"-Wl,-soname,{soname}", "-o", str(out / soname), str(out / "stub.c")],
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            pytest.skip(f"the C compiler could not build the stub {soname}: {proc.stderr.strip()[-300:]}")
        libs.append(out / soname)
    return libs


# The child interpreter: load the stubs, import the real bindings, dump the API, probe, run perfkit code.
CHILD = r"""
import ctypes, json, re, sys
site, out, *libs = sys.argv[1:]
for lib in libs:
    ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
sys.path.insert(0, site)
import tensorrt_bindings as trt

PREFIX = re.compile(r"\btensorrt_bindings\.tensorrt\.")
norm = lambda s: PREFIX.sub("tensorrt.", s)
is_enum = lambda c: isinstance(c, type) and isinstance(getattr(c, "__members__", None), dict)

def sigs(obj, name):
    lines = [l.strip() for l in (getattr(obj, "__doc__", None) or "").splitlines()]
    if len(lines) > 1 and lines[1] == "Overloaded function.":
        return [norm(l.split(". ", 1)[1]) for l in lines if re.match(r"^\d+\. " + re.escape(name) + r"\(", l)]
    return [norm(lines[0])] if lines and lines[0].startswith(name + "(") else []

def klass(cls):
    out = {"methods": {}, "properties": {}, "enums": {}, "other": [], "settable": []}
    for name in dir(cls):
        if name.startswith("_pybind11") or (name.startswith("__") and name != "__init__"):
            continue
        raw = next((vars(k)[name] for k in cls.__mro__ if name in vars(k)), None)
        if isinstance(raw, property):
            first = ((raw.fget.__doc__ or "").strip().splitlines() or [""])[0] if raw.fget else ""
            out["properties"][name] = norm(first.split("->", 1)[1].strip()) if "->" in first else None
            if raw.fset is not None:
                out["settable"].append(name)
        elif is_enum(raw):
            out["enums"][name] = {k: int(v) for k, v in raw.__members__.items()}
        elif type(raw).__name__ in ("instancemethod", "wrapper_descriptor", "method_descriptor"):
            out["methods"][name] = sigs(raw, name)
        elif raw is not None:
            out["other"].append(name)
    return out

api = {"version": trt.__version__, "classes": {}, "enums": {}, "names": []}
for name in dir(trt):
    obj = getattr(trt, name)
    if name.startswith("_") and name != "__version__":
        continue
    api["names"].append(name)
    if is_enum(obj):
        api["enums"][name] = {k: int(v) for k, v in obj.__members__.items()}
    elif isinstance(obj, type):
        api["classes"][name] = c = klass(obj)
        for enum, members in c["enums"].items():
            api["enums"][name + "." + enum] = members

def probe(fn):
    try:
        return fn()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"

def tuple_as_dims():
    desc = trt.PluginTensorDesc()
    desc.dims = (2, 3, 224, 224)  # a Dims-typed setter, as set_shape's min/opt/max
    return tuple(desc.dims) == (2, 3, 224, 224)

def buffer_protocol(tp):  # bytes(IHostMemory) and Path.write_bytes(IHostMemory)
    if sys.version_info >= (3, 12):
        return hasattr(tp, "__buffer__")
    return bool(ctypes.cast(id(tp), ctypes.POINTER(ctypes.c_void_p))[20])  # PyTypeObject.tp_as_buffer

def perfkit_logger():
    from perfkit.backends import tensorrt as T
    assert T.import_tensorrt() is trt  # no `tensorrt` package here: perfkit takes the bindings themselves
    logger = T.make_logger(trt, keep=3)
    assert isinstance(logger, trt.ILogger)
    S = trt.ILogger.Severity
    for severity, msg in [(S.INTERNAL_ERROR, "a"), (S.ERROR, "b"), (S.WARNING, "c"), (S.INFO, "d"), (S.VERBOSE, "e")]:
        logger.log(severity, msg)
    try:
        trt.Builder(logger)  # the real binding takes perfkit's logger, then meets the null stub
    except TypeError as exc:
        assert "nullptr" in str(exc), exc
    return {"messages": list(logger.messages), "errors": list(logger.errors)}

def perfkit_profiler():
    from perfkit.profiler.layers import tensorrt as L
    profiler = L.make_profiler(trt)
    assert isinstance(profiler, trt.IProfiler)
    profiler.report_layer_time("node_a + node_b", 0.5)
    profiler.report_layer_time("node_a + node_b", 0.25)
    return {"ms": dict(profiler.ms), "reports": dict(profiler.reports)}

S = trt.ILogger.Severity
api["probes"] = {
    "tuple_as_dims": probe(tuple_as_dims),
    "dims_as_tuple": probe(lambda: tuple(trt.Dims([8, 1000])) == (8, 1000) and type(trt.Dims([1])[0]) is int),
    "host_memory_is_a_buffer": probe(lambda: buffer_protocol(trt.IHostMemory)),
    "error_code_str": probe(lambda: f"{trt.ErrorCode.UNSUPPORTED_NODE}"),
    "severity_order_and_name": probe(lambda: [int(s) for s in (S.INTERNAL_ERROR, S.ERROR, S.WARNING, S.INFO)]
                                      + [S.WARNING.name]),
    "builder_without_library": probe(lambda: trt.Builder(trt.Logger())),
    "perfkit_logger": probe(perfkit_logger),
    "perfkit_profiler": probe(perfkit_profiler),
}
with open(out, "w") as f:
    json.dump(api, f, default=str)
"""


def _cache(request) -> Path:
    if os.environ.get("PERFKIT_TRT_BINDINGS_DIR"):
        return Path(os.environ["PERFKIT_TRT_BINDINGS_DIR"])
    if getattr(request.config, "cache", None) is None:  # -p no:cacheprovider: download into this session's tmp
        return request.getfixturevalue("tmp_path_factory").mktemp("trt-bindings")
    return Path(request.config.cache.mkdir("trt-bindings"))


@pytest.fixture(scope="session")
def real_api(request, tmp_path_factory):
    """major -> the API dump of that TensorRT's real bindings (skips with the reason when unreachable)."""
    apis: dict[str, dict] = {}
    unreachable: dict[str, str] = {}  # asked once per session, not once per test

    def load(major: str) -> dict:
        if major in apis:
            return apis[major]
        if major in unreachable:
            pytest.skip(unreachable[major])
        if not sys.platform.startswith("linux"):
            pytest.skip("the stub libraries rely on ELF sonames (Linux only)")
        if _compiler() is None:
            pytest.skip("no C compiler (cc/gcc/clang) to build the TensorRT library stubs")
        dist, version = WHEELS[major]
        try:
            site = _unpacked(dist, version, _cache(request))
        except Unreachable as exc:
            unreachable[major] = f"{dist}=={version} is not reachable: {exc}"
            pytest.skip(unreachable[major])
        libs = _stubs(site, tmp_path_factory.mktemp(f"stubs{major}"), version)
        out = tmp_path_factory.mktemp(f"api{major}") / "api.json"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.run([sys.executable, "-c", CHILD, str(site), str(out), *map(str, libs)],
                              capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 0, f"the real {dist}=={version} did not import with the stubs:\n{proc.stderr[-3000:]}"
        apis[major] = json.loads(out.read_text())
        assert apis[major]["version"] == version
        return apis[major]

    return load


@pytest.fixture(params=sorted(WHEELS), ids=lambda major: f"trt{major}")
def api(request, real_api):
    return real_api(request.param)


# == signatures ==================================================================================


def _split(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "([{<"
        depth -= ch in ")]}>"
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return parts + [cur.strip()] if cur.strip() else parts


def parse_signature(sig: str) -> tuple[list[tuple[str, str, bool]], str]:
    """'f(self: A, x: B = 0) -> R' -> ([('self', 'A', False), ('x', 'B', True)], 'R')."""
    head, _, ret = sig.rpartition(" -> ")
    params = []
    for p in _split(head[head.index("(") + 1: head.rindex(")")]):
        name, _, rest = p.partition(": ")
        typ, eq, _ = rest.partition(" = ")
        params.append((name.strip(), typ.strip(), bool(eq)))
    return params, RETURN_ALIASES.get(ret.strip(), ret.strip())


def accepts(api: dict, declared: str, passed: str | None) -> bool:
    """Does a parameter declared ``declared`` take a value of perfkit type ``passed`` (None: unknown)?"""
    if passed is None:
        return True
    if passed in ("int", "bool") and declared in ("int", "typing.SupportsInt", "typing.SupportsIndex"):
        return True
    if passed == "bytes":
        return declared in ("bytes", "buffer", "typing_extensions.Buffer", "collections.abc.Buffer")
    if passed in ("tuple", "list"):
        return declared == passed or declared.startswith(("collections.abc.Sequence", "typing.Sequence")) or (
            declared == "tensorrt.Dims" and api["probes"]["tuple_as_dims"] is True)
    return declared == passed


def overload_problem(api: dict, sig: str, call: "Use") -> str | None:
    params, _ = parse_signature(sig)
    params = params[1:]  # self
    if not call.starred and len(call.args) > len(params):
        return f"takes {len(params)} positional arguments, perfkit passes {len(call.args)}"
    for (name, declared, _), passed in zip(params, call.args):
        if not accepts(api, declared, passed):
            return f"{name} is {declared}, perfkit passes {passed}"
    rest = {p[0]: p for p in params[len(call.args):]}
    for key, passed in call.kwargs.items():
        if key not in rest:
            return f"has no parameter {key!r}"
        declared = rest.pop(key)[1]
        if not accepts(api, declared, passed):
            return f"{key} is {declared}, perfkit passes {passed}"
    missing = [name for name, _, default in rest.values() if not default]
    if missing and not call.starred:
        return f"needs {missing} too"
    return None


def returns(api: dict, owner: str, name: str, call: "Use") -> str | None:
    """The return type of the first overload of ``owner.name`` that takes ``call``."""
    for sig in api["classes"].get(owner, {}).get("methods", {}).get(name, []):
        if overload_problem(api, sig, call) is None:
            return parse_signature(sig)[1]
    return None


# == perfkit's TensorRT code, read with ast ======================================================


@dataclass
class Use:
    """One use of TensorRT in perfkit: an attribute of a typed object, or a call of it."""

    where: str
    owner: str  # class or enum ("ILogger.Severity"); "" for the module
    name: str
    kind: str  # "attr" | "set" (an assignment to it) | "call" | "override" | "untyped-call"
    args: list = field(default_factory=list)  # perfkit types of the positional arguments (None: unknown)
    kwargs: dict = field(default_factory=dict)
    starred: bool = False
    guarded: bool = False  # reached through getattr(obj, "name", default) / hasattr: may be missing

    def __str__(self):
        return f"{self.where}: {self.owner + '.' if self.owner else 'trt.'}{self.name}"


MODULE = ("module",)
ENUM_VALUE_ATTRS = {"name", "value"}
BUILTIN_RESULTS = {"int": "int", "str": "str", "bytes": "bytes", "tuple": "tuple", "list": "list", "len": "int",
                   "bool": "bool", "float": "float", "isinstance": "bool", "hasattr": "bool"}


class TensorRTUsage:
    """Types the TensorRT objects of one perfkit module and records every use of them.

    Types: ``MODULE`` (the tensorrt module), ``("class", C)``, ``("enum", E)``, ``"tensorrt.C"`` (an
    instance, or an enum value when C is an enum), ``("method", C, m)``, ``("unbound", C, m)``,
    builtin names ("int", "str", ...), or None (unknown: not TensorRT as far as this can tell).
    """

    def __init__(self, api: dict, path: Path, source: str | None = None):
        self.api, self.path = api, path
        self.tree = ast.parse(path.read_text() if source is None else source)
        self.uses: list[Use] = []
        self.self_env: dict[str, object] = {}
        self.functions = {n.name: self.annotation(n.returns) for n in ast.walk(self.tree)
                          if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.returns is not None}
        self.subclass_attrs: dict[str, set[str]] = {}  # real class -> attributes of perfkit's subclasses of it
        self.recording = False
        for final in (False, False, True):  # fixpoint for self.* set in one method, used in another
            self.recording, self.uses = final, []
            self.block(self.tree.body, {})

    # -- types ------------------------------------------------------------------------------------

    def annotation(self, node) -> object:
        if node is None:
            return None
        text = ast.unparse(node) if not isinstance(node, ast.Constant) else str(node.value)
        m = re.search(r"\btensorrt\.([A-Za-z_][\w.]*)", text)
        if m and (m.group(1) in self.api["classes"] or m.group(1) in self.api["enums"]):
            return f"tensorrt.{m.group(1)}"
        return text.split("[")[0] if text.split("[")[0] in BUILTIN_RESULTS else None

    def members(self, owner: str) -> set[str]:
        if owner in self.api["enums"]:
            return set(self.api["enums"][owner])
        c = self.api["classes"].get(owner)
        return set() if c is None else {*c["methods"], *c["properties"], *c["enums"], *c["other"]}

    def use(self, node, owner, name, kind, **kw) -> None:
        if self.recording:
            self.uses.append(Use(f"{self.path.relative_to(ROOT)}:{node.lineno}", owner, name, kind, **kw))

    def attribute(self, node: ast.Attribute, env, guarded=False) -> object:
        base = self.expr(node.value, env)
        name = node.attr
        if base == MODULE:
            self.use(node, "", name, "attr", guarded=guarded)
            if name in self.api["classes"]:
                return ("class", name)
            return ("enum", name) if name in self.api["enums"] else None
        if isinstance(base, tuple) and base[0] == "class":
            self.use(node, base[1], name, "attr", guarded=guarded)
            nested = f"{base[1]}.{name}"
            return ("enum", nested) if nested in self.api["enums"] else ("unbound", base[1], name)
        if isinstance(base, tuple) and base[0] == "enum":
            self.use(node, base[1], name, "attr", guarded=guarded)
            return f"tensorrt.{base[1]}"
        if isinstance(base, str) and base.startswith("tensorrt."):
            owner = base.removeprefix("tensorrt.")
            if owner in self.api["enums"]:
                return "int" if name == "value" else ("str" if name == "name" else None)
            if name in self.subclass_attrs.get(owner, ()):
                return None  # perfkit's own attribute of its subclass (the logger's messages)
            self.use(node, owner, name, "attr", guarded=guarded)
            cls = self.api["classes"].get(owner, {})
            if name in cls.get("properties", {}):
                return cls["properties"][name]
            return ("method", owner, name)
        return None

    def call(self, node: ast.Call, env) -> object:
        args = [self.expr(a.value if isinstance(a, ast.Starred) else a, env) for a in node.args]
        kwargs = {k.arg: self.expr(k.value, env) for k in node.keywords if k.arg}
        starred = any(isinstance(a, ast.Starred) for a in node.args)
        func = node.func
        if isinstance(func, ast.Name):
            if func.id in ("getattr", "hasattr") and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant):
                target = ast.Attribute(value=node.args[0], attr=node.args[1].value, ctx=ast.Load(), lineno=node.lineno)
                typ = self.attribute(target, env, guarded=func.id == "hasattr" or len(node.args) == 3)
                return "bool" if func.id == "hasattr" else typ
            if func.id == "import_tensorrt":
                return MODULE
            if func.id in BUILTIN_RESULTS:
                return BUILTIN_RESULTS[func.id]
            return self.functions.get(func.id) or env.get(f"class:{func.id}")
        callee = self.expr(func, env)
        if isinstance(callee, tuple) and callee[0] == "class":
            self.use(node, callee[1], "__init__", "call", args=args, kwargs=kwargs, starred=starred)
            return f"tensorrt.{callee[1]}"
        if isinstance(callee, tuple) and callee[0] in ("method", "unbound"):
            args = args[1:] if callee[0] == "unbound" else args  # trt.X.method(self, ...)
            self.use(node, callee[1], callee[2], "call", args=args, kwargs=kwargs, starred=starred)
            return returns(self.api, callee[1], callee[2], Use("", callee[1], callee[2], "call", args, kwargs, starred))
        if callee is None and isinstance(func, ast.Attribute):
            self.use(node, "", func.attr, "untyped-call")
        return None

    def expr(self, node, env) -> object:
        if node is None:
            return None
        if isinstance(node, ast.Constant):
            return {str: "str", int: "int", bool: "bool", bytes: "bytes"}.get(type(node.value))
        if isinstance(node, ast.Name):
            return env.get(node.id)
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id == "self" and f"self.{node.attr}" in self.self_env:
                return self.self_env[f"self.{node.attr}"]
            return self.attribute(node, env)
        if isinstance(node, ast.Call):
            return self.call(node, env)
        if isinstance(node, ast.BinOp):
            left, right = self.expr(node.left, env), self.expr(node.right, env)
            return "int" if isinstance(node.op, (ast.LShift, ast.Add, ast.Mult, ast.Sub)) and left == right == "int" else None
        if isinstance(node, ast.IfExp):
            self.expr(node.test, env)
            body, orelse = self.expr(node.body, env), self.expr(node.orelse, env)
            return body if body == orelse else None
        if isinstance(node, (ast.Compare, ast.BoolOp)):
            for child in ast.iter_child_nodes(node):
                self.expr(child, env)
            return "bool"
        if isinstance(node, ast.Tuple):
            for elt in node.elts:
                self.expr(elt, env)
            return "tuple"
        for child in ast.iter_child_nodes(node):  # record the uses inside anything else
            if isinstance(child, ast.expr):
                self.expr(child, env)
            elif isinstance(child, ast.comprehension):
                self.expr(child.iter, env)
                for cond in child.ifs:
                    self.expr(cond, env)
        return None

    # -- statements -------------------------------------------------------------------------------

    def bind(self, target, typ, env) -> None:
        if isinstance(target, ast.Name):
            env[target.id] = typ
        elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
            if typ is not None or f"self.{target.attr}" not in self.self_env:
                self.self_env[f"self.{target.attr}"] = typ
        elif isinstance(target, ast.Attribute):  # `context.profiler = ...`: a property TensorRT must let us set
            base = self.expr(target.value, env)
            owner = base.removeprefix("tensorrt.") if isinstance(base, str) and base.startswith("tensorrt.") else None
            if owner in self.api["classes"] and target.attr not in self.subclass_attrs.get(owner, ()):
                self.use(target, owner, target.attr, "set", args=[typ])

    def assign(self, targets, value, env, typ=None) -> None:
        for target in targets:
            if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple) and len(target.elts) == len(value.elts):
                for t, v in zip(target.elts, value.elts):
                    self.bind(t, self.expr(v, env), env)
                continue
            found = self.expr(value, env) if typ is None else typ
            for t in (target.elts if isinstance(target, ast.Tuple) else [target]):
                self.bind(t, found if t is target else None, env)

    def function(self, node, env) -> None:
        local = dict(env)
        a = node.args
        for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs]:
            local[arg.arg] = MODULE if arg.arg == "trt" else self.annotation(arg.annotation)
        self.block(node.body, local)

    def subclass(self, node: ast.ClassDef, env) -> None:
        bases = [self.expr(b, env) for b in node.bases]
        real = next((b[1] for b in bases if isinstance(b, tuple) and b[0] == "class"), None)
        if real is None:
            self.block(node.body, env)
            return
        own = {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
               and n.value.id == "self" and isinstance(n.ctx, ast.Store)}
        self.subclass_attrs.setdefault(real, set()).update(own)
        env[f"class:{node.name}"] = f"tensorrt.{real}"
        for item in node.body:
            if isinstance(item, ast.FunctionDef):
                arity = len(item.args.args) - 1
                self.use(item, real, item.name, "override", args=[None] * arity)
                self.function(item, {**env, "self": None})

    def block(self, body, env) -> None:
        for stmt in body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.function(stmt, env)
            elif isinstance(stmt, ast.ClassDef):
                self.subclass(stmt, env)
            elif isinstance(stmt, ast.Assign):
                self.assign(stmt.targets, stmt.value, env)
            elif isinstance(stmt, ast.AnnAssign):
                found = self.expr(stmt.value, env)
                self.bind(stmt.target, self.annotation(stmt.annotation) or found, env)
            elif isinstance(stmt, ast.For):
                self.expr(stmt.iter, env)
                self.assign([stmt.target], ast.Constant(value=None), env, typ=None)
                self.block(stmt.body + stmt.orelse, env)
            elif isinstance(stmt, (ast.If, ast.While)):
                self.expr(stmt.test, env)
                self.block(stmt.body + stmt.orelse, env)
            elif isinstance(stmt, ast.With):
                for item in stmt.items:
                    self.expr(item.context_expr, env)
                self.block(stmt.body, env)
            elif isinstance(stmt, ast.Try):
                self.block(stmt.body + [h for x in stmt.handlers for h in x.body] + stmt.orelse + stmt.finalbody, env)
            else:
                for child in ast.iter_child_nodes(stmt):
                    if isinstance(child, ast.expr):
                        self.expr(child, env)


def tensorrt_modules() -> list[Path]:
    """perfkit's modules that handle TensorRT objects: those that call import_tensorrt."""
    found = [p for p in sorted(PERFKIT.rglob("*.py")) if re.search(r"\bimport_tensorrt\(\)", p.read_text())]
    assert PERFKIT / "backends" / "tensorrt.py" in found, "perfkit's TensorRT backend moved: update this test"
    return found


def usage(api: dict) -> list[Use]:
    return [u for path in tensorrt_modules() for u in TensorRTUsage(api, path).uses]


def use_problem(api: dict, use: Use, other: dict | None = None) -> str | None:
    """What is wrong with ``use`` in TensorRT ``api`` (``other``: the other supported version)."""
    names = set(api["names"])
    members = (names if not use.owner else
               set(api["enums"].get(use.owner, {})) | {m for k in ("methods", "properties", "enums", "other")
                                                       for m in api["classes"].get(use.owner, {}).get(k, {})})
    if use.owner and use.owner not in api["classes"] and use.owner not in api["enums"]:
        return f"TensorRT {api['version']} has no {use.owner}"
    if use.kind == "untyped-call":
        return None
    if use.name not in members:
        if use.guarded and other is not None and use.name in _members_of(other, use.owner):
            return None  # in the other version only, reached through getattr/hasattr: fine
        return f"TensorRT {api['version']} has no {'trt.' if not use.owner else use.owner + '.'}{use.name}"
    if use.kind == "set":
        cls = api["classes"][use.owner]
        if use.name not in cls["properties"] or use.name not in cls.get("settable", ()):
            return f"{use.owner}.{use.name} is not a property perfkit can set in TensorRT {api['version']}"
        declared = cls["properties"][use.name]
        if declared and not accepts(api, declared, use.args[0]):
            return f"{use.owner}.{use.name} is {declared}, perfkit sets {use.args[0]}"
        return None
    if use.kind == "override":
        sigs = api["classes"][use.owner]["methods"].get(use.name, [])
        arities = [len(parse_signature(s)[0]) - 1 for s in sigs]
        return None if len(use.args) in arities else f"overrides {use.owner}.{use.name} with {len(use.args)} arguments, real: {sigs}"
    if use.kind == "call":
        sigs = api["classes"][use.owner]["methods"].get(use.name)
        if sigs is None:
            return f"{use.owner}.{use.name} is not a method in TensorRT {api['version']}"
        problems = [overload_problem(api, s, use) for s in sigs]
        if all(problems):
            return f"no overload of {use.owner}.{use.name} in TensorRT {api['version']} takes perfkit's call: " + \
                "; ".join(f"[{s}] {p}" for s, p in zip(sigs, problems))
    return None


def _members_of(api: dict, owner: str) -> set[str]:
    if not owner:
        return set(api["names"])
    c = api["classes"].get(owner, {})
    return set(api["enums"].get(owner, {})) | {m for k in ("methods", "properties", "enums", "other") for m in c.get(k, {})}


# == (1) perfkit's TensorRT code against the real API ==============================================


def test_every_tensorrt_use_in_perfkit_exists_with_the_arguments_perfkit_passes(real_api):
    apis = {major: real_api(major) for major in sorted(WHEELS)}
    problems = []
    for major, api in apis.items():
        other = next(a for m, a in apis.items() if m != major)
        for use in usage(api):
            problem = use_problem(api, use, other)
            if problem:
                problems.append(f"{use.where}: {problem}")
    assert not problems, "\n".join(sorted(set(problems)))


def test_calls_on_objects_of_unknown_type_are_not_tensorrt_calls(api):
    """A method call the analysis cannot type, but whose name is a TensorRT method, would go
    unchecked: annotate the object (``x: tensorrt.IExecutionContext``) so that it is checked."""
    import collections
    import pathlib

    import torch

    trt_methods = {m for c in api["classes"].values() for m in c["methods"]}
    everyday = set().union(*(dir(t) for t in (torch.Tensor, torch.cuda.Stream, pathlib.Path, str, bytes, dict, list,
                                              tuple, set, collections.deque)))
    suspicious = [str(u) for u in usage(api) if u.kind == "untyped-call" and u.name in trt_methods - everyday]
    assert not suspicious, "calls of TensorRT method names on objects of unknown type: " + ", ".join(suspicious)


def test_the_analysis_sees_perfkits_tensorrt_calls(api):
    """Not vacuous: the calls at the heart of the export and the runner are found, typed and checked."""
    checked = {f"{u.owner}.{u.name}" for u in usage(api) if u.kind in ("call", "override")}
    for call in ("Builder.__init__", "Builder.create_network", "OnnxParser.parse_from_file", "OnnxParser.get_error",
                 "ParserError.node_operator", "IBuilderConfig.set_timing_cache", "IOptimizationProfile.set_shape",
                 "Builder.build_serialized_network", "ITimingCache.serialize", "Runtime.deserialize_cuda_engine",
                 "ICudaEngine.get_tensor_dtype", "ICudaEngine.create_execution_context", "IExecutionContext.set_input_shape",
                 "IExecutionContext.set_optimization_profile_async", "IExecutionContext.set_tensor_address",
                 "IExecutionContext.execute_async_v3", "ILogger.__init__", "ILogger.log",
                 # the layer profile (perfkit.profiler.layers.tensorrt)
                 "IProfiler.__init__", "IProfiler.report_layer_time", "IExecutionContext.report_to_profiler",
                 "ICudaEngine.create_engine_inspector", "EngineInspector.get_engine_information"):
        assert call in checked, f"{call} is no longer found in perfkit's TensorRT code (renamed? untyped?)"
    attrs = {f"{u.owner}.{u.name}" for u in usage(api) if u.kind == "attr"}
    assert {"NetworkDefinitionCreationFlag.STRONGLY_TYPED", "BuilderFlag.TF32", "DataType.FLOAT",
            "ICudaEngine.device_memory_size_v2", "OnnxParser.num_errors", "ILogger.Severity",
            "LayerInformationFormat.JSON", "ProfilingVerbosity.DETAILED", "ProfilingVerbosity.LAYER_NAMES_ONLY",
            "ProfilingVerbosity.NONE"} <= attrs
    assigned = {f"{u.owner}.{u.name}" for u in usage(api) if u.kind == "set"}
    assert {"IExecutionContext.profiler", "IExecutionContext.enqueue_emits_profile",
            "IBuilderConfig.profiling_verbosity"} <= assigned


SAMPLE = '''
from perfkit.backends.tensorrt import import_tensorrt

def build(x):
    trt = import_tensorrt()
    logger = trt.Logger()
    builder = trt.Builder(logger)
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16)                  # gone in TensorRT 11
    config.set_timing_cache(config.create_timing_cache(b""))  # ignore_mismatch is required
    profile = builder.create_optimization_profile()
    profile.set_shape("input", min=(1,), opt=(1,), maximum=(1,))  # no such keyword
    network = builder.create_network(0)
    network.add_nothing()                                  # no such method
    engine = trt.Runtime(logger).deserialize_cuda_engine(b"")
    size = getattr(engine, "device_memory_size", None)      # TensorRT 10 only, guarded: fine
    engine.device_memory_size                              # unguarded
    context = engine.create_execution_context()
    context.execute_async_v3()                             # the stream is missing
    context.profiler = trt.IProfiler()                     # right
    context.profilr = None                                 # no such property
    engine.num_layers = 3                                  # read-only
    context.enqueue_emits_profile = "yes"                  # a bool property
    x.set_input_shape("input", (1,))                       # a TensorRT call on an untyped object
'''


def test_the_checker_finds_what_is_wrong(real_api):
    apis = {major: real_api(major) for major in sorted(WHEELS)}
    path = PERFKIT / "sample.py"  # not a file: the source is SAMPLE
    found = {major: [f"{use_problem(api, u, next(a for m, a in apis.items() if m != major))}"
                     for u in TensorRTUsage(api, path, SAMPLE).uses] for major, api in apis.items()}
    untyped = [u.name for u in TensorRTUsage(apis["11"], path, SAMPLE).uses if u.kind == "untyped-call"]
    text11 = "\n".join(found["11"])
    assert "has no BuilderFlag.FP16" in text11 and "has no BuilderFlag.FP16" not in "\n".join(found["10"])
    assert "set_timing_cache" in text11 and "needs ['ignore_mismatch']" in text11
    assert "has no parameter 'maximum'" in text11
    assert "has no INetworkDefinition.add_nothing" in text11
    assert "has no ICudaEngine.device_memory_size" in text11  # the unguarded one; the getattr one passes
    assert text11.count("device_memory_size") == 1
    assert "execute_async_v3" in text11 and "needs ['stream_handle']" in text11
    assert "has no IExecutionContext.profilr" in text11
    assert "ICudaEngine.num_layers is not a property perfkit can set" in text11
    assert "IExecutionContext.enqueue_emits_profile is bool, perfkit sets str" in text11
    assert "IExecutionContext.profiler" not in text11  # an IProfiler, set as the real one takes it
    assert untyped == ["set_input_shape"]


# == (2) the fake TensorRT of the unit tests is a subset of the real one ==========================


def _fake_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("perfkit_tests_fake_tensorrt_checked", FAKE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _arity(fn) -> tuple[int, int]:
    params = [p for p in inspect.signature(fn).parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][1:]
    return sum(p.default is p.empty for p in params), len(params)


def fake_problems(api: dict, fake) -> list[str]:
    """Public names of ``fake`` (a module) that the real API lacks, or has as another kind or arity."""
    problems = []
    for name, value in vars(fake).items():
        if (name.startswith("_") and name != "__version__") or isinstance(value, (types.ModuleType, __future__._Feature)):
            continue
        if name == "__version__" or name in api["enums"]:
            problems += [f"{name}.{m}: not a member" for m in _public(value) if m not in api["enums"].get(name, {m})]
        elif name not in api["classes"]:
            problems.append(f"{name}: not in TensorRT {api['version']}")
        else:
            problems += _fake_class_problems(api, value, name)
    return problems


def _public(cls) -> list[str]:
    return [m for m in vars(cls) if not m.startswith("_")] if isinstance(cls, type) else []


def _fake_class_problems(api: dict, fake: type, real: str) -> list[str]:
    cls, problems = api["classes"][real], []
    for name in _public(fake):
        value = vars(fake)[name]
        if isinstance(value, property):
            if name not in cls["properties"]:
                problems.append(f"{real}.{name}: a property in the fake, " +
                                ("a method" if name in cls["methods"] else "absent") + " in the real one")
            elif value.fset is not None and name not in cls.get("settable", ()):
                problems.append(f"{real}.{name}: settable in the fake, read-only in the real one")
        elif inspect.isfunction(value):
            if name not in cls["methods"]:
                problems.append(f"{real}.{name}: a method in the fake, " +
                                ("a property" if name in cls["properties"] else "absent") + " in the real one")
                continue
            low, high = _arity(value)
            real_arities = [(sum(not d for _, _, d in ps[1:]), len(ps) - 1)
                            for ps in (parse_signature(s)[0] for s in cls["methods"][name])]
            if not any(r_low <= high and low <= r_high for r_low, r_high in real_arities):
                problems.append(f"{real}.{name}: the fake takes {low}..{high} arguments, the real {cls['methods'][name]}")
        elif isinstance(value, type) and f"{real}.{name}" in api["enums"]:
            problems += [f"{real}.{name}.{m}: not a member" for m in _public(value)
                         if m not in api["enums"][f"{real}.{name}"]]
        elif name not in _members_of(api, real):
            problems.append(f"{real}.{name}: not in the real class")
    return problems


def test_the_fake_tensorrt_is_a_subset_of_the_real_one(api):
    problems = fake_problems(api, _fake_module())
    assert not problems, f"tests/backends/fake_tensorrt.py vs TensorRT {api['version']}: " + "; ".join(problems)


def test_the_fake_checker_finds_what_is_wrong(api):
    fake = types.ModuleType("fake")

    class OnnxParser:
        num_errors = property(lambda self: 0)  # right
        def get_error(self, index): ...  # right
        def parse_from_file(self, model, extra): ...  # one argument too many
        def errors(self): ...  # made up

    class IExecutionContext:
        def all_binding_shapes_specified(self): ...  # a property in the real class

    class ICudaEngine:
        num_layers = property(lambda self: 3, lambda self, value: None)  # read-only in the real class

    fake.OnnxParser, fake.IExecutionContext, fake.ICudaEngine = OnnxParser, IExecutionContext, ICudaEngine
    fake.BuilderFlag = type("BuilderFlag", (), {"TF32": 6, "FP17": 99})
    fake.NotTensorRT = type("NotTensorRT", (), {})
    problems = fake_problems(api, fake)
    assert sorted(p.split(":")[0] for p in problems) == [
        "BuilderFlag.FP17", "ICudaEngine.num_layers", "IExecutionContext.all_binding_shapes_specified", "NotTensorRT",
        "OnnxParser.errors", "OnnxParser.parse_from_file"]


# == (3) perfkit code on the real objects, and behaviour no signature shows =====================


def test_behaviour_perfkit_relies_on(api):
    p = api["probes"]
    assert p["tuple_as_dims"] is True, p  # profile.set_shape(name, min=tuple, ...)
    assert p["dims_as_tuple"] is True, p  # tuple(context.get_tensor_shape(...)) for torch.empty
    assert p["host_memory_is_a_buffer"] is True, p  # Path.write_bytes(engine), bytes(cache.serialize())
    assert p["error_code_str"] == "ErrorCode.UNSUPPORTED_NODE", p  # parser errors as the fake prints them
    assert p["severity_order_and_name"] == [0, 1, 2, 3, "WARNING"], p  # the logger compares int(severity)
    assert "nullptr" in str(p["builder_without_library"]), p  # the stubs really are null


def test_perfkits_logger_and_import_on_the_real_bindings(api):
    assert api["probes"]["perfkit_logger"] == {
        "messages": ["INTERNAL_ERROR: a", "ERROR: b", "WARNING: c"], "errors": ["  a", "  b"]}


def test_perfkits_layer_profiler_on_the_real_bindings(api):
    """perfkit's IProfiler subclass is a real ``IProfiler`` (what ``context.profiler`` takes) and sums
    what TensorRT reports per layer."""
    assert api["probes"]["perfkit_profiler"] == {"ms": {"node_a + node_b": 0.75}, "reports": {"node_a + node_b": 2}}
