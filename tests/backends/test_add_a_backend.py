"""Adding a runtime is one module (and one registry line, or $PERFKIT_BACKENDS outside perfkit).

This test writes a new backend module — ``torch.export``'s ExportedProgram saved with
``torch.export.save`` and run with ``torch.export.load(...).module()`` — into a temporary folder,
names it in $PERFKIT_BACKENDS, and runs export, check, profile (memory included: a spawned process
must find the backend too) and the HTML report through it, touching no perfkit file.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from perfkit import backends
from perfkit.cli import main
from perfkit.store import Kind, Store

MODULE = textwrap.dedent('''
    """A backend written outside perfkit: a torch.export ExportedProgram (.pt2 program, not compiled)."""
    import torch

    from perfkit.backends.base import CPU_FLOAT, EXPORT, ArtifactRunner, Backend, Option


    def export(req):
        model = req.model()
        x = req.example_input()
        dims = ({0: torch.export.Dim("batch", min=req.batch.min, max=req.batch.max)},) if req.dynamic else None
        program = torch.export.export(model, (x,), dynamic_shapes=dims, strict=req.options["program_strict"])
        torch.export.save(program, str(req.out_dir / "program.pt2"))
        return "program.pt2"


    class ProgramRunner(ArtifactRunner):
        name = "program"
        torch_runtime = True

        def _load(self):
            self.module = torch.export.load(str(self.artifact.path)).module()

        def _infer(self, x):
            with torch.inference_mode():
                return self.module(x)

        def config(self):
            return {"strict": self.artifact.manifest["options"]["program_strict"]}


    BACKEND = Backend(
        name="program", summary="torch.export ExportedProgram, interpreted", runner=ProgramRunner, export=export,
        options=(Option("program_strict", False, "program: strict torch.export tracing", stage=EXPORT),),
        precisions={"cpu": CPU_FLOAT},
    )
''')


@pytest.fixture
def program_backend(tmp_path, monkeypatch):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "perfkit_program_backend.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", str(folder))  # spawned memory-measuring processes import it too
    monkeypatch.setenv("PERFKIT_BACKENDS", "perfkit_program_backend")
    backends.reload()
    yield backends.get("program")
    monkeypatch.delenv("PERFKIT_BACKENDS")
    backends.reload()


def _records(capsys) -> list[dict]:
    return json.loads(capsys.readouterr().out)["records"]


def test_a_new_backend_module_runs_through_every_command(program_backend, tmp_path, capsys):
    assert "program" in backends.names()
    base = ["lenet5", "--weights", "random", "--device", "cpu", "--json"]

    assert main(["export", *base, "-f", "program", "--program-strict"]) == 0  # its option is on the CLI
    [export] = [r for r in _records(capsys) if r["kind"] == "export"]
    assert export["runtime"] == "program" and export["status"] == "ok"
    assert export["metrics"]["options"] == {"program_strict": True}

    assert main(["check", *base, "-f", "program", "-b", "1,3", "--samples", "6"]) == 0
    parity = [r for r in _records(capsys) if r["kind"] == "parity"]
    assert [(r["runtime"], r["batch"], r["metrics"]["passed"]) for r in parity] == [("program", 1, True), ("program", 3, True)]

    assert main(["profile", *base, "-f", "eager,program", "-b", "1,2", "--warmup", "1", "--warmup-seconds", "0",
                 "--iterations", "3", "--min-seconds", "0"]) == 0
    recs = _records(capsys)
    latency = {(r["runtime"], r["batch"]) for r in recs if r["kind"] == "latency" and r["status"] == "ok"}
    assert latency == {(rt, b) for rt in ("eager", "program") for b in (1, 2)}
    memory = [r for r in recs if r["kind"] == "memory" and r["runtime"] == "program"]
    assert memory and all(r["status"] == "ok" and r["metrics"]["peak_bytes"] > 0 for r in memory)
    assert all(r["metrics"]["runtime_config"] == {"strict": False} for r in recs
               if r["kind"] == "latency" and r["runtime"] == "program")

    html = tmp_path / "r.html"
    assert main(["report", "latest", "--html", str(html)]) == 0
    assert "program" in html.read_text()
    with Store() as store:
        assert {r.runtime for r in store.records(kind=Kind.LATENCY)} == {"eager", "program"}


def test_an_unloadable_backend_module_is_a_one_line_error(monkeypatch, capsys):
    monkeypatch.setenv("PERFKIT_BACKENDS", "no_such_backend_module")
    try:
        backends.reload()
    except Exception as exc:
        assert "no_such_backend_module" in str(exc) and "PERFKIT_BACKENDS" in str(exc)
    else:
        pytest.fail("an unknown backend module must be refused")
    finally:
        monkeypatch.delenv("PERFKIT_BACKENDS")
        backends.reload()


def test_an_installed_package_adds_a_backend_through_its_entry_point(tmp_path, monkeypatch, capsys):
    """Python's plug-in convention: a distribution declaring ``[project.entry-points."perfkit.backends"]``
    is found with no environment variable (here an installed distribution's metadata written by hand)."""
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "perfkit_program_backend.py").write_text(MODULE)
    dist = folder / "perfkit_program-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: perfkit-program\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[perfkit.backends]\nprogram = perfkit_program_backend\n")
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delenv("PERFKIT_BACKENDS", raising=False)
    try:
        backends.reload()
        assert "program" in backends.names()
        assert main(["export", "lenet5", "--weights", "random", "-f", "program", "--json"]) == 0
        assert [r["status"] for r in _records(capsys) if r["kind"] == "export"] == ["ok"]
    finally:
        monkeypatch.undo()
        backends.reload()
    assert "program" not in backends.names()
