"""The native runtime: the CMake build, the binary's timing mode, and ``NativeRunner`` over its
``--serve`` pipe.

Fast tests use fake binaries (shell and Python scripts that speak the binary's protocols), so the
Python side is tested without a compiler; the slow ones build perfkit/native/runner.cpp with CMake.
"""

import fnmatch
import json
import os
import stat
import struct
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
import torch

import perfkit
from perfkit.backends import get, open_runner
from perfkit.backends import native
from perfkit.backends.native import NativeBuildError, NativeRunner, build_native, run_binary
from perfkit.context import Context
from perfkit.errors import MeasurementError, PerfkitError, UsageError
from perfkit.profiler.timing import LatencyStats, TimingConfig, time_runner

STAT_KEYS = ("iterations", "warmup_iterations", "latency_mean_ms", "latency_median_ms", "latency_p90_ms",
             "latency_p95_ms", "latency_p99_ms", "latency_min_ms", "latency_max_ms", "latency_std_ms",
             "latency_cv", "throughput_per_s", "threads", "batch", "samples_ms", "output_shape", "load_seconds")


def _script(path, body: str, shebang: str = "/bin/sh"):
    path.write_text(f"#!{shebang}\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def _timing_cmd(binary, model, *, shape=(3, 32, 32), batch=1, threads=None, fmt="torchscript", warmup=0,
                warmup_seconds=0, iterations=1, min_seconds=0, extra=()):
    cmd = [str(binary), "--model", str(model), "--format", fmt, "--device", "cpu", "--shape",
           ",".join(map(str, shape)), "--batch", str(batch), "--warmup", str(warmup), "--warmup-seconds",
           str(warmup_seconds), "--iterations", str(iterations), "--min-seconds", str(min_seconds), *extra]
    if threads:
        cmd += ["--threads", str(threads)]
    return cmd


# -- fast: the build wrapper and the timing mode, without a compiler ---------------------------------

def test_missing_cmake_is_an_actionable_error(monkeypatch, tmp_path):
    monkeypatch.setattr(native.shutil, "which", lambda name: None)
    with pytest.raises(NativeBuildError, match="install cmake"):
        build_native(tmp_path / "b")
    assert "cmake" in get("native").unavailable("cpu")


def test_up_to_date_build_is_reused_and_a_changed_one_rebuilt(monkeypatch, tmp_path):
    calls = []

    def fake_call(cmd, log):
        calls.append(cmd)
        (tmp_path / native.BINARY_NAME).write_text("binary")

    monkeypatch.setattr(native, "_check_call", fake_call)
    first = build_native(tmp_path)
    assert first.rebuilt and len(calls) == 2  # configure + build
    assert any(a.startswith("-DTORCH_DIR=") for a in calls[0]) and any(a.startswith("-DTORCH_CXX11_ABI=") for a in calls[0])
    again = build_native(tmp_path)
    assert not again.rebuilt and again.seconds == 0 and len(calls) == 2
    stamp = json.loads((tmp_path / "perfkit-build.json").read_text())
    stamp["sources_sha256"] = "changed"
    (tmp_path / "perfkit-build.json").write_text(json.dumps(stamp))
    assert build_native(tmp_path).rebuilt and len(calls) == 4
    assert build_native(tmp_path, force=True).rebuilt and len(calls) == 6


def test_build_folder_configured_from_another_source_starts_cmake_afresh(monkeypatch, tmp_path):
    # an older checkout configured the artifacts' build folder from its top-level CMakeLists.txt:
    # CMake refuses `-S perfkit/native` over that cache, so its state must go (the binary may stay)
    build = tmp_path / "b"
    (build / "CMakeFiles").mkdir(parents=True)
    (build / "CMakeCache.txt").write_text("CMAKE_HOME_DIRECTORY:INTERNAL=/old/checkout\n")
    seen = []

    def fake_call(cmd, log):
        seen.append((cmd, (build / "CMakeCache.txt").exists(), (build / "CMakeFiles").exists()))
        (build / native.BINARY_NAME).write_text("binary")

    monkeypatch.setattr(native, "_check_call", fake_call)
    build_native(build)
    configure, cache_left, files_left = seen[0]
    assert configure[configure.index("-S") + 1] == str(native.SOURCE_DIR)
    assert not cache_left and not files_left
    # a cache of this very source folder is kept: CMake reconfigures it incrementally
    (build / "CMakeCache.txt").write_text(f"CMAKE_HOME_DIRECTORY:INTERNAL={native.SOURCE_DIR}\n")
    build_native(build, force=True)
    assert seen[-2][1] is True


def test_native_sources_are_package_data():
    """A wheel ships what the build reads: both files sit in the package and match its package-data."""
    package = Path(perfkit.__file__).resolve().parent
    pyproject = tomllib.loads((package.parent / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["perfkit"]
    for source in native._SOURCES:
        assert source.is_file() and source.is_relative_to(package), source
        relative = source.relative_to(package).as_posix()
        assert any(fnmatch.fnmatch(relative, g) for g in globs), relative


def test_run_binary_parses_json_and_reports_rss(tmp_path):
    binary = _script(tmp_path / "fake", 'echo "some log line"\necho \'{"iterations": 3, "samples_ms": [1, 2, 3]}\'\n')
    out = run_binary(_timing_cmd(binary, tmp_path / "m.ts", shape=(3, 8, 8), batch=2), what="fake")
    assert out["iterations"] == 3 and out["samples_ms"] == [1, 2, 3]
    assert out["max_rss_bytes"] > 0


def test_run_binary_failure_carries_stderr(tmp_path):
    binary = _script(tmp_path / "fake", 'echo "perfkit-native-runner: cannot open model" >&2\nexit 2\n')
    with pytest.raises(PerfkitError, match="fake run failed \\(exit 2\\): .*cannot open model"):
        run_binary(_timing_cmd(binary, tmp_path / "m.ts", shape=(3, 8, 8)), what="fake run")


def test_run_binary_without_json_is_a_measurement_error(tmp_path):
    binary = _script(tmp_path / "fake", 'echo "no json here"\n')
    with pytest.raises(MeasurementError, match="printed no JSON"):
        run_binary([str(binary)], what="fake")


def test_native_backend_runs_the_torchscript_artifact_in_fp32_only(tiny_spec, tmp_path):
    backend = get("native")
    assert backend.artifact_from == "torchscript" and not backend.exports and backend.needs_artifact
    assert backend.runner is NativeRunner and NativeRunner.self_timed and NativeRunner.out_of_process
    with pytest.raises(UsageError, match="native on cpu supports fp32, not fp16"):
        open_runner(tiny_spec, "native", Context(artifacts=tmp_path), precision="fp16")
    assert not list(tmp_path.rglob("*.ts"))  # refused before anything was exported


# -- fast: NativeRunner against a fake binary that speaks the --serve protocol ------------------------

# Serve mode: request = int64 N + N*C*H*W float32; reply = int64 N, int64 K, N*K float32 logits whose
# row i is the first K values of sample i (so layout and byte order are checked exactly), or int64 -1,
# int64 L, L bytes of error text for a batch of 13. A batch of 17 kills the process. Timing mode:
# prints one JSON line like the real binary. Every invocation's argv is appended to $FAKE_NATIVE_LOG.
FAKE_NATIVE = textwrap.dedent("""\
    import json, os, struct, sys

    args = sys.argv[1:]
    with open(os.environ["FAKE_NATIVE_LOG"], "a") as log:
        log.write(json.dumps(args) + "\\n")
    c, h, w = (int(v) for v in args[args.index("--shape") + 1].split(","))
    K = 10
    if "--serve" not in args:
        batch = int(args[args.index("--batch") + 1])
        iterations = int(args[args.index("--iterations") + 1])
        print("LibTorch says hello")
        print(json.dumps({"runtime": "native", "batch": batch, "iterations": iterations,
                          "warmup_iterations": int(args[args.index("--warmup") + 1]), "threads": 4,
                          "samples_ms": [1.0 + i / 1000 for i in range(iterations)], "load_seconds": 0.25,
                          "rss_before_load_bytes": 200 << 20, "peak_rss_bytes": 300 << 20, "peak_rss_reset": True}))
        sys.exit(0)
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = inp.read(8)
        if len(head) < 8:
            break
        (n,) = struct.unpack("<q", head)
        per = c * h * w
        values = struct.unpack(f"<{n * per}f", inp.read(4 * n * per))
        if n == 17:
            sys.stderr.write("fake runner: CUDA error: an illegal memory access was encountered\\n")
            sys.stderr.flush()
            os._exit(3)
        if n == 13:
            text = b"forward failed: unlucky batch 13"
            out.write(struct.pack("<qq", -1, len(text)) + text)
        else:
            rows = [v for i in range(n) for v in values[i * per:i * per + K]]
            out.write(struct.pack("<qq", n, K) + struct.pack(f"<{n * K}f", *rows))
        out.flush()
    with open(os.environ["FAKE_NATIVE_LOG"], "a") as log:
        log.write(json.dumps("closed") + "\\n")
""")


@pytest.fixture
def fake_native(tmp_path, monkeypatch):
    """NativeRunner with the fake binary instead of the CMake build; returns the argv log reader."""
    binary = _script(tmp_path / "fake-native", FAKE_NATIVE, shebang=sys.executable)
    log = tmp_path / "argv.log"
    monkeypatch.setenv("FAKE_NATIVE_LOG", str(log))
    monkeypatch.setattr(NativeRunner, "_binary", lambda self: binary)

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []

    return calls


def _expected(x):
    return x.flatten(1)[:, :10]


def test_serve_protocol_round_trip(fake_native, tiny_spec, tmp_path):
    ctx = Context(artifacts=tmp_path / "art")
    runner = open_runner(tiny_spec, "native", ctx)
    assert runner.artifact.backend == "torchscript" and runner.artifact.path.name == "model.ts"
    with runner as r:
        for batch in (1, 3, 8):
            x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
            got = r.infer(x)
            assert got.dtype == torch.float32 and got.shape == (batch, 10)
            assert torch.equal(got, _expected(x))  # exact: the pipe carries float32 bytes unchanged
        proc = r._proc
    assert proc.poll() is not None and runner._proc is None  # the process ended when the block closed
    [argv, closed] = fake_native()
    assert closed == "closed"
    assert argv[argv.index("--model") + 1] == str(runner.artifact.path)
    assert argv[argv.index("--shape") + 1] == "3,32,32" and argv[argv.index("--device") + 1] == "cpu"
    assert argv[argv.index("--format") + 1] == "torchscript"
    assert "--serve" in argv and "--no-freeze" not in argv and "--threads" not in argv


def test_serve_error_reply_is_a_measurement_error_and_the_runner_stays_up(fake_native, tiny_spec, tmp_path):
    with open_runner(tiny_spec, "native", Context(artifacts=tmp_path / "art")) as r:
        with pytest.raises(MeasurementError, match="native runner: forward failed: unlucky batch 13"):
            r.infer(torch.zeros(13, 3, 32, 32))
        x = tiny_spec.example_input(2, seed=1)
        assert torch.equal(r.infer(x), _expected(x))
    assert len([c for c in fake_native() if c != "closed"]) == 1  # one process served all three requests


def test_dead_native_process_is_reported_with_its_stderr(fake_native, tiny_spec, tmp_path):
    with open_runner(tiny_spec, "native", Context(artifacts=tmp_path / "art")) as r:
        with pytest.raises(MeasurementError, match="native runner died: .*illegal memory access"):
            r.infer(torch.zeros(17, 3, 32, 32))


def test_native_input_is_validated_before_it_reaches_the_pipe(fake_native, tiny_spec, tmp_path):
    with open_runner(tiny_spec, "native", Context(artifacts=tmp_path / "art")) as r:
        with pytest.raises(PerfkitError, match=r"expected input \(N, 3, 32, 32\)"):
            r.infer(torch.zeros(1, 3, 28, 28))
        x = tiny_spec.example_input(1)
        assert torch.equal(r.infer(x), _expected(x))


def test_run_options_reach_the_command_line(fake_native, tiny_spec, tmp_path):
    ctx = Context(artifacts=tmp_path / "art", threads=3, options={"optimize": False})
    with open_runner(tiny_spec, "native", ctx) as r:
        assert r.config()["optimize_for_inference"] is False and r.config()["intra_op_threads"] == 3
    [argv, _] = fake_native()
    assert "--no-freeze" in argv and argv[argv.index("--threads") + 1] == "3"


def test_time_self_returns_the_binarys_samples(fake_native, tiny_spec, tmp_path):
    config = TimingConfig(warmup=2, warmup_seconds=0.5, iterations=6, min_seconds=0)
    with open_runner(tiny_spec, "native", Context(artifacts=tmp_path / "art")) as r:
        assert r.config()["intra_op_threads"] == "libtorch default"
        out = r.time_self(4, config)
        timing = time_runner(r, tiny_spec.example_input(4), config)  # the profiler hands over to time_self
        assert r.config()["intra_op_threads"] == 4  # the count the binary ran with, recorded with the timing
    assert out["samples_ms"] == [1.0 + i / 1000 for i in range(6)] and out["max_rss_bytes"] > 0
    calls = [c for c in fake_native() if c != "closed"]  # the processes start concurrently: any order
    assert sum("--serve" in c for c in calls) == 1 and len(calls) == 3
    first = next(c for c in calls if "--serve" not in c)
    for flag, value in (("--batch", "4"), ("--warmup", "2"), ("--warmup-seconds", "0.5"), ("--iterations", "6"),
                        ("--min-seconds", "0")):
        assert first[first.index(flag) + 1] == value, flag
    assert timing.timer.startswith("native") and timing.load_seconds == 0.25
    assert timing.compute.median_ms == pytest.approx(LatencyStats.from_samples(out["samples_ms"], 4).median_ms)
    assert timing.compute.iterations == 6 and timing.compute.warmup_iterations == 2


def test_own_memory_is_the_peak_over_the_rss_before_load(fake_native, tiny_spec, tmp_path):
    from perfkit.backends import make_runner, prepare

    ctx = Context(artifacts=tmp_path / "art")
    runner = make_runner(tiny_spec, "native", ctx, prepare(tiny_spec, "native", ctx))
    out = runner.own_memory(2, 3)  # not entered: it runs a process of its own
    assert out["peak_bytes"] == out["rss_delta_bytes"] == 100 << 20
    assert "VmHWM" in out["method"]


def test_own_memory_without_proc_is_not_measured(fake_native, tiny_spec, tmp_path, monkeypatch):
    """On macOS the binary reads no VmRSS (-1): peak - (-1) would be the whole process, not the model."""
    from perfkit.backends import make_runner, prepare

    ctx = Context(artifacts=tmp_path / "art")
    runner = make_runner(tiny_spec, "native", ctx, prepare(tiny_spec, "native", ctx))
    monkeypatch.setattr(runner, "time_self", lambda batch, config: {
        "rss_before_load_bytes": -1, "peak_rss_bytes": -1, "peak_rss_reset": False, "max_rss_bytes": 300 << 20})
    with pytest.raises(MeasurementError, match="not measured on this platform.*/proc/self/status"):
        runner.own_memory(2, 3)


# -- slow: the real build (about 30 s on an idle 2-core machine, twice that when busy) ------------

@pytest.fixture(scope="session")
def built(tmp_path_factory):
    return build_native(tmp_path_factory.mktemp("native-build"))


@pytest.fixture
def lenet_ts(tiny_spec, tmp_path):
    model = tiny_spec.build()
    with torch.no_grad():
        frozen = torch.jit.freeze(torch.jit.trace(model, tiny_spec.example_input(1)))
    path = tmp_path / "lenet5.ts"
    frozen.save(str(path))
    return path, model


def _file_logits(binary, model_path, x, tmp_path, fmt="torchscript"):
    """Logits of the binary's file mode (--input/--output): one call, no timing loop."""
    inp, outp = tmp_path / "x.f32", tmp_path / "y.f32"
    inp.write_bytes(x.detach().contiguous().numpy().tobytes())
    result = run_binary(_timing_cmd(binary, model_path, shape=tuple(x.shape[1:]), batch=x.shape[0], fmt=fmt,
                                    extra=("--input", str(inp), "--output", str(outp))), what="native")
    return torch.frombuffer(bytearray(outp.read_bytes()), dtype=torch.float32).reshape(result["output_shape"])


@pytest.mark.slow
def test_native_builds_and_reuses(built):
    assert built.binary.is_file() and os.access(built.binary, os.X_OK)
    assert built.rebuilt and built.seconds > 0
    assert build_native(built.build_dir).rebuilt is False


@pytest.mark.slow
def test_native_logits_match_python(built, lenet_ts, tiny_spec, tmp_path):
    path, model = lenet_ts
    x = tiny_spec.example_input(4, seed=3)
    got = _file_logits(built.binary, path, x, tmp_path)
    with torch.no_grad():
        want_ts = torch.jit.load(str(path))(x)
        want_eager = model(x)
    assert got.shape == (4, 10)
    torch.testing.assert_close(got, want_ts, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got, want_eager, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_native_json_statistics(built, lenet_ts):
    path, _ = lenet_ts
    out = run_binary(_timing_cmd(built.binary, path, batch=2, threads=1, warmup=2, iterations=7), what="native")
    assert all(k in out for k in STAT_KEYS)
    assert out["runtime"] == "native" and out["batch"] == 2 and out["threads"] == 1 and out["frozen"] is True
    assert out["iterations"] == len(out["samples_ms"]) >= 7 and out["warmup_iterations"] == 2
    assert out["output_shape"] == [2, 10]
    assert out["peak_rss_reset"] is True and out["peak_rss_bytes"] >= out["rss_before_load_bytes"] > 0
    # the C++ statistics are the ones Python computes from the same samples
    py = LatencyStats.from_samples(out["samples_ms"], batch=2)
    for key, value in py.metrics().items():
        if key != "warmup_iterations":
            assert out[key] == pytest.approx(value, rel=1e-9), key


@pytest.mark.slow
@pytest.mark.skipif(not native.aoti_loader_available(), reason="this torch ships no AOTInductor package loader")
def test_native_runs_an_aoti_package(built, tiny_spec, tmp_path):
    model = tiny_spec.build()
    x = tiny_spec.example_input(2)
    program = torch.export.export(model, (x,))
    pt2 = torch._inductor.aoti_compile_and_package(program, package_path=str(tmp_path / "lenet5.pt2"))
    got = _file_logits(built.binary, pt2, x, tmp_path, fmt="aoti")
    with torch.no_grad():
        torch.testing.assert_close(got, model(x), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("options", [{}, {"optimize": False}])
def test_native_runner_matches_eager_through_the_serve_pipe(options, built, tiny_spec, tmp_path, monkeypatch):
    monkeypatch.setenv("PERFKIT_NATIVE_BUILD", str(built.build_dir))
    ctx = Context(artifacts=tmp_path / "art", threads=1, options=options)
    with open_runner(tiny_spec, "eager", ctx) as eager:
        want = {b: eager.infer(tiny_spec.example_input(b, seed=b)) for b in (1, 3)}
    with open_runner(tiny_spec, "native", ctx) as r:
        assert r.binary == built.binary  # the session's build, reused
        for b in (1, 3):
            got = r.infer(tiny_spec.example_input(b, seed=b))
            assert got.shape == (b, 10)
            torch.testing.assert_close(got, want[b], rtol=1e-4, atol=1e-5)
        out = r.time_self(2, TimingConfig(warmup=1, warmup_seconds=0, iterations=5, min_seconds=0))
        # the serve process is still up and answering after the timing process ran
        torch.testing.assert_close(r.infer(tiny_spec.example_input(1, seed=1)), want[1], rtol=1e-4, atol=1e-5)
    assert len(out["samples_ms"]) == out["iterations"] >= 5 and all(s > 0 for s in out["samples_ms"])
    assert out["batch"] == 2 and out["threads"] == 1 and out["frozen"] is (options == {})


@pytest.mark.slow
def test_profile_native_cli(built, capsys, monkeypatch, tmp_path):
    from perfkit.cli import main

    monkeypatch.setenv("PERFKIT_NATIVE_BUILD", str(built.build_dir))
    rc = main(["profile", "lenet5", "-f", "native,eager", "--batch", "1,2", "--json", "--warmup", "1",
               "--warmup-seconds", "0", "--iterations", "5", "--min-seconds", "0", "--store", str(tmp_path / "s.db"),
               "--weights", "random"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0, out
    native_rows = [r for r in out["records"] if r["runtime"] == "native"]
    latency = [r for r in native_rows if r["kind"] == "latency"]
    memory = [r for r in native_rows if r["kind"] == "memory"]
    assert [r["batch"] for r in latency] == [1, 2] and [r["batch"] for r in memory] == [1, 2]
    for r in latency:
        m = r["metrics"]
        assert r["status"] == "ok" and m["self_timed"] is True and m["timer"].startswith("native")
        assert m["iterations"] >= 5 and m["latency_median_ms"] > 0
        assert m["achieved_gflops"] > 0 and m["threads"] >= 1
    for r in memory:
        mem = r["metrics"]
        assert "VmHWM" in mem["method"]
        # the delta excludes LibTorch itself (hundreds of MB), which the process peak includes
        assert 0 < mem["peak_bytes"] == mem["rss_delta_bytes"] < mem["process_peak_rss_bytes"]


def test_native_is_unavailable_on_windows_with_the_reason():
    from perfkit.backends.native import _probe

    assert _probe("cpu", platform="win32") == "the native runner runs on Linux and macOS only"
