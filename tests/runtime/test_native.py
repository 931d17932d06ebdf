import json
import os
import stat

import pytest
import torch

from perfkit.errors import PerfkitError
from perfkit.runtime import native
from perfkit.runtime.native import NativeBuildError, build_native, native_logits, run_native

STAT_KEYS = ("iterations", "warmup_iterations", "latency_mean_ms", "latency_median_ms", "latency_p90_ms",
             "latency_p95_ms", "latency_p99_ms", "latency_min_ms", "latency_max_ms", "latency_std_ms",
             "latency_cv", "throughput_per_s", "threads", "batch", "samples_ms", "output_shape", "load_seconds")


def _script(path, body: str):
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


# -- fast: the wrapper's logic, without a compiler ---------------------------------------------------

def test_missing_cmake_is_an_actionable_error(monkeypatch, tmp_path):
    monkeypatch.setattr(native.shutil, "which", lambda name: None)
    with pytest.raises(NativeBuildError, match="install cmake"):
        build_native(tmp_path / "b")


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


def test_run_native_parses_json_and_reports_rss(tmp_path):
    binary = _script(tmp_path / "fake", 'echo "some log line"\necho \'{"iterations": 3, "samples_ms": [1, 2, 3]}\'\n')
    out = run_native(binary, tmp_path / "m.ts", input_size=(3, 8, 8), batch=2)
    assert out["iterations"] == 3 and out["samples_ms"] == [1, 2, 3]
    assert out["max_rss_bytes"] > 0


def test_run_native_failure_carries_stderr(tmp_path):
    binary = _script(tmp_path / "fake", 'echo "perfkit-native-runner: cannot open model" >&2\nexit 2\n')
    with pytest.raises(PerfkitError, match="exit 2.*cannot open model"):
        run_native(binary, tmp_path / "m.ts", input_size=(3, 8, 8), batch=1)


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


@pytest.mark.slow
def test_native_builds_and_reuses(built):
    assert built.binary.is_file() and os.access(built.binary, os.X_OK)
    assert built.rebuilt and built.seconds > 0
    assert build_native(built.build_dir).rebuilt is False


@pytest.mark.slow
def test_native_logits_match_python(built, lenet_ts, tiny_spec):
    path, model = lenet_ts
    x = tiny_spec.example_input(4, seed=3)
    got = native_logits(built.binary, path, x)
    with torch.no_grad():
        want_ts = torch.jit.load(str(path))(x)
        want_eager = model(x)
    assert got.shape == (4, 10)
    torch.testing.assert_close(got, want_ts, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got, want_eager, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_native_json_statistics(built, lenet_ts):
    from perfkit.profile.timing import LatencyStats

    path, _ = lenet_ts
    out = run_native(built.binary, path, input_size=(3, 32, 32), batch=2, threads=1, warmup=2, warmup_seconds=0,
                     iterations=7, min_seconds=0)
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
    got = native_logits(built.binary, pt2, x, fmt="aoti")
    with torch.no_grad():
        torch.testing.assert_close(got, model(x), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_profile_native_cli(built, capsys, monkeypatch, tmp_path):
    from perfkit.cli import main

    monkeypatch.setenv("PERFKIT_NATIVE_BUILD", str(built.build_dir))
    rc = main(["profile", "lenet5", "-f", "native,eager", "--batch", "1,2", "--json", "--warmup", "1",
               "--warmup-seconds", "0", "--iterations", "5", "--min-seconds", "0", "--store", str(tmp_path / "s.db")])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0, out
    native_rows = [r for r in out["results"] if r["runtime"] == "native"]
    assert [r["batch"] for r in native_rows] == [1, 2]
    for r in native_rows:
        assert r["latency"]["iterations"] >= 5 and r["latency"]["latency_median_ms"] > 0
        assert r["latency"]["achieved_gflops"] > 0 and r["latency"]["threads"] >= 1
        mem = r["memory"]
        assert "VmHWM" in mem["method"]
        # the delta excludes LibTorch itself (hundreds of MB), which the process peak includes
        assert 0 < mem["peak_bytes"] == mem["rss_delta_bytes"] < mem["process_peak_rss_bytes"]
