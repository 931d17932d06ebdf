"""AOTInductor's CUDA settings without a GPU: weights through torch's allocator (so the memory
profile counts them), and a missing CUDA toolkit as one line. The CPU export and run are in
test_runners.py; the CUDA run and its memory are gpu-marked there and in tests/profiler/test_memory.py."""

from __future__ import annotations

import types

import pytest
import torch

from perfkit.backends import aoti as A
from perfkit.errors import ArtifactError
from perfkit.vocab import BatchRange, Precision


def test_cuda_weights_go_through_torchs_caching_allocator():
    configs = A.compile_options({"inductor_freezing": True}, "cuda:1")
    assert configs == {"freezing": True, "aot_inductor.weight_use_caching_allocator": True}
    assert A.compile_options({"inductor_freezing": False}, "cpu") == {"freezing": False}
    # the setting exists in this torch's Inductor (a rename would silently drop the weights from the peak)
    from torch._inductor import config

    assert config.aot_inductor.weight_use_caching_allocator is False  # Inductor's default: raw cudaMalloc
    with config.patch(configs):
        assert config.aot_inductor.weight_use_caching_allocator is True


def _request(tmp_path, device="cuda:0"):
    from perfkit.zoo.sources import resolve

    spec = resolve("lenet5", weights="random")
    return types.SimpleNamespace(spec=spec, device=device, model=lambda: spec.build().eval(),
                                 example_input=lambda: spec.example_input(2),
                                 batch=BatchRange(1, 2, 4), dynamic=True, precision=Precision.FP32, options={"inductor_freezing": True},
                                 out_dir=tmp_path, info={})


@pytest.mark.parametrize("home, headers, problem", [
    (None, False, "no CUDA toolkit found"),
    ("/usr/local", False, "CUDA_HOME=/usr/local has no include/cuda_runtime_api.h"),  # nvcc wrapper in /usr/local/bin
    ("TOOLKIT", True, None),
])
def test_cuda_toolkit_problem(home, headers, problem, tmp_path, monkeypatch):
    from torch.utils import cpp_extension

    if home == "TOOLKIT":
        home = str(tmp_path)
        (tmp_path / "include").mkdir()
        (tmp_path / "include" / "cuda_runtime_api.h").write_text("")
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", home)
    monkeypatch.delenv("CUDA_INC_PATH", raising=False)
    monkeypatch.setattr(A.os.path, "isfile", lambda p, real=A.os.path.isfile: real(p) and not p.startswith("/usr/"))
    got = A.cuda_toolkit_problem()
    assert got is None if problem is None else problem in got


def test_missing_toolkit_is_one_line_before_compiling(tmp_path, monkeypatch):
    monkeypatch.setattr(A, "cuda_toolkit_problem", lambda: "no CUDA toolkit found (CUDA_HOME unset, ...)")
    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", lambda *a, **k: pytest.fail("compiled"))
    with pytest.raises(ArtifactError) as err:
        A.export(_request(tmp_path))
    [line] = str(err.value).splitlines()
    assert "AOTInductor on CUDA needs a CUDA toolkit" in line and "CUDA_HOME" in line


def test_a_compile_that_fails_on_cuda_headers_is_one_line(tmp_path, monkeypatch):
    def compile_fails(*args, **kwargs):
        raise RuntimeError("C++ compile error\n\nCommand:\ng++ ... \n\nOutput:\n"
                           "/tmp/x.cpp:4:10: fatal error: cuda_runtime_api.h: No such file or directory\n")

    monkeypatch.setattr(A, "cuda_toolkit_problem", lambda: None)
    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", compile_fails)
    with pytest.raises(ArtifactError) as err:
        A.export(_request(tmp_path))
    [line] = str(err.value).splitlines()
    assert "cuda_runtime_api.h" in line and "toolkit is missing or incomplete" in line
    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package",
                        lambda *a, **k: (_ for _ in ()).throw(RuntimeError("an unrelated Inductor bug")))
    with pytest.raises(RuntimeError, match="unrelated"):  # other failures are not disguised
        A.export(_request(tmp_path))
