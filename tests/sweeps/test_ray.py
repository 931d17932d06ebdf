"""perfkit.sweeps.ray: a local Ray instance of 2 workers records the sequential plan's keys, a worker
killed mid-sweep changes nothing, and how a cluster is joined (a fake ``ray`` for that part)."""

import sys
import types
from collections import Counter

import pytest

from perfkit.cli import main
from perfkit.errors import UsageError
from perfkit.store import Store
from perfkit.sweeps import ray as on_ray

FAST = ["--warmup", "1", "--warmup-seconds", "0", "--iterations", "3", "--min-seconds", "0"]
LENET = ["lenet5", "-f", "eager,onnx", "-b", "1,2", "--no-memory", *FAST]
PLAN_KEYS = {("latency", "lenet5", runtime, "fp32", batch, "cpu") for runtime in ("eager", "onnx") for batch in (1, 2)}


def _measured(path) -> Counter:
    with Store(path, read_only=True) as store:
        return Counter(r.key for r in store.records() if r.kind != "model")


def _on_local_ray(tmp_path, artifacts) -> int:
    return main(["sweep", *LENET, "--ray", "local", "--workers", "2", "--store", str(tmp_path / "store.db"),
                 "--artifacts", str(artifacts)])


@pytest.mark.slow
def test_local_ray_records_the_sequential_plans_keys(tmp_path):
    pytest.importorskip("ray")
    assert _on_local_ray(tmp_path, tmp_path / "artifacts") == 0
    assert _measured(tmp_path / "store.db") == Counter(PLAN_KEYS)
    with Store(tmp_path / "store.db", read_only=True) as store:
        [run] = store.runs()
        records = store.records(run["id"])
    assert run["status"] == "ok" and all(r.env.get("cpu_count") for r in records)  # the worker's fingerprint
    # eager times on the threads it has in process (Ray's workers start with OMP_NUM_THREADS=1)
    import torch

    assert {r.metrics["threads"] for r in records if r.runtime == "eager" and r.kind == "latency"} == {
        torch.get_num_threads()}
    # one ONNX artifact served the four cells (one batch range, one set of export options)
    assert len([d for d in (tmp_path / "artifacts" / "lenet5").iterdir() if d.name.startswith("onnx-")]) == 1


@pytest.mark.slow
def test_a_worker_killed_mid_sweep_is_retried_and_nothing_is_duplicated(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setenv(on_ray.TEST_KILL, f"2:{tmp_path}")  # the worker of the third cell dies once (SIGKILL)
    assert _on_local_ray(tmp_path, tmp_path / "artifacts") == 0
    assert (tmp_path / "killed").exists()  # it did die
    assert _measured(tmp_path / "store.db") == Counter(PLAN_KEYS)


def _fake_ray(monkeypatch, resources: dict) -> dict:
    """A ``ray`` module that records how it was started and has ``resources``."""
    calls: dict = {}
    monkeypatch.delenv("RAY_gcs_server_port_wait_time_s", raising=False)  # connect sets it: restored after
    fake = types.ModuleType("ray")
    fake.init = lambda **kwargs: calls.update(init=kwargs, up=True)
    fake.shutdown = lambda: calls.update(shutdown=True, up=False)
    fake.cluster_resources = lambda: resources
    fake.is_initialized = lambda: calls.get("up", False)
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setattr(on_ray, "_answers", lambda address: None)
    return calls


def test_local_declares_one_perfkit_node_and_the_workers(monkeypatch):
    calls = _fake_ray(monkeypatch, {})
    leave = on_ray.connect("local", 2)
    assert calls["init"]["num_cpus"] == 2 and calls["init"]["resources"] == {on_ray.NODE_RESOURCE: 1}
    leave()
    assert calls["shutdown"]


def test_a_cluster_without_perfkit_node_is_refused_with_the_fix(monkeypatch):
    calls = _fake_ray(monkeypatch, {"CPU": 64})
    with pytest.raises(UsageError, match="ray start .*perfkit_node"):
        on_ray.connect("10.0.0.1:6379", None)
    assert calls["init"]["address"] == "10.0.0.1:6379" and calls["shutdown"]  # left again
    with pytest.raises(UsageError, match="--workers"):
        on_ray.connect("10.0.0.1:6379", 4)


def test_ray_address_comes_from_the_environment(monkeypatch):
    calls = _fake_ray(monkeypatch, {on_ray.NODE_RESOURCE: 3})
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.2:6379")
    on_ray.connect(None, None)
    assert calls["init"]["address"] == "10.0.0.2:6379"


def test_an_address_that_is_not_host_port_is_one_line():
    with pytest.raises(UsageError, match="HOST:PORT"):
        on_ray._answers("somewhere")


def test_a_ray_this_process_started_is_used_and_left_running(monkeypatch):
    calls = _fake_ray(monkeypatch, {on_ray.NODE_RESOURCE: 1})
    calls.update(init={"address": "mine"}, up=True)
    on_ray.connect("local", None)()
    assert calls["init"] == {"address": "mine"} and "shutdown" not in calls


def test_a_worker_that_resolves_another_model_measures_nothing(tiny_spec):
    from perfkit.sweeps.plan import Cell, Setup

    cell = Cell(0, "lenet5", "eager", "fp32", 1)
    setup = Setup({"lenet5": {"text": "lenet5", "weights": "random"}}, {"lenet5": "0" * 64}, {"lenet5": (1,)},
                  ("singlestream",), {}, False, "cpu")
    why, env = on_ray._measure(setup, cell, None)
    assert isinstance(why, str) and "resolves to another model on this worker" in why and env["cpu_count"]
    assert on_ray._measure(setup, cell, "ArtifactError: broken")[0] == "ArtifactError: broken"
    missing = Setup({"lenet5": {"text": "nosuch"}}, {"lenet5": tiny_spec.identity}, {"lenet5": (1,)}, ("singlestream",))
    assert on_ray._measure(missing, cell, None)[0].startswith("cannot resolve lenet5 on this worker: UsageError")
