"""One command-line vocabulary: every command that takes -b/--batch, --precision, --json, --resume or
-f/--runtimes takes it the same way, and refuses a bad value the same way (one line, exit 2, before
anything runs)."""

from __future__ import annotations

import argparse

import pytest

from perfkit.cli import build_parser, main
from perfkit.store import Store


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return dict(sub.choices)


COMMANDS = _commands()


def _action(parser, flag):
    return next((a for a in parser._actions if flag in a.option_strings), None)


def _having(flag) -> list[str]:
    return [name for name, p in COMMANDS.items() if _action(p, flag) is not None]


def _required(name: str, data_dir) -> list[str]:
    """The smallest argv the command accepts (a new required argument makes this test say so)."""
    values = {"model": ["lenet5"], "models": ["lenet5"], "data": ["--data", str(data_dir)],
              "baseline": ["--baseline", "latest"]}
    argv = []
    for a in COMMANDS[name]._actions:
        if (not a.option_strings and a.nargs != "*") or a.required:
            assert a.dest in values, f"{name}: required argument {a.dest} unknown to this test"
            argv += values[a.dest]
    return argv


def _signature(action) -> tuple:
    return (type(action).__name__, tuple(action.option_strings), action.dest, action.nargs, action.const, action.type,
            action.choices)


def test_the_shared_options_are_where_they_belong():
    assert set(_having("--batch")) == {"run", "check", "validate", "profile", "sweep", "train", "select"}
    assert set(_having("--precision")) == {"run", "export", "check", "validate", "profile", "sweep"}
    # int8 calibration goes with the precision axis, everywhere it is
    for flag in ("--calib", "--calib-samples", "--calib-method"):
        assert set(_having(flag)) == set(_having("--precision")), flag
    assert set(_having("--resume")) == {"run", "train"}
    assert set(_having("--runtimes")) == {"run", "export", "check", "validate", "profile", "sweep"}
    # every command prints JSON on request
    assert set(_having("--json")) == set(COMMANDS)


MODEL_FLAGS = ("--num-classes", "--ema", "--model-code", "--input-size", "--mean", "--std", "--resize", "--crop",
               "--interpolation")


def test_every_command_that_takes_a_model_has_the_model_and_preprocessing_flags():
    for flag in MODEL_FLAGS:
        having = set(_having(flag)) - ({"train"} if flag == "--input-size" else set())  # train's: the training size
        assert having == {"run", "export", "check", "validate", "profile", "sweep", "summary"}, flag
    assert set(_having("--weights")) == {"run", "export", "check", "validate", "profile", "sweep", "summary", "train"}
    assert not any(_action(COMMANDS["zoo"], flag) for flag in MODEL_FLAGS)  # a listing, unchanged


def test_the_model_flags_become_resolve_keywords():
    from perfkit.cli.options import model_keywords
    from perfkit.zoo.sources import resolve

    args = build_parser().parse_args([
        "profile", "--model-code", "net.py:build", "--input-size", "3,32,48", "--num-classes", "3", "--weights", "w.pth",
        "--ema", "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25", "--resize", "40", "--crop", "32",
        "--interpolation", "bicubic", "--reference", "model.onnx"])
    keywords = model_keywords(args)
    assert keywords == {"weights": "w.pth", "num_classes": 3, "input_size": (3, 32, 48), "model_code": "net.py:build",
                        "ema": True, "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "resize": 40, "crop": 32,
                        "interpolation": "bicubic", "reference": "model.onnx"}
    import inspect

    assert set(keywords) <= set(inspect.signature(resolve).parameters)  # the API takes the same names
    assert model_keywords(build_parser().parse_args(["profile", "lenet5", "--input-size", "64"]))["input_size"] == 64


@pytest.mark.parametrize("argv, message", [
    (["--input-size", "3,abc"], "--input-size must be C,H,W or N"),
    (["--mean", "0.5,0.5"], "--mean takes three comma-separated numbers"),
    (["--interpolation", "lanczos"], "argument --interpolation: invalid choice"),
    (["--num-classes", "0", "--weights", "random"], "--num-classes must be a positive integer"),
])
def test_bad_model_flags_are_one_line_exit_2(argv, message, capsys):
    assert main(["profile", "lenet5", *argv]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert message in line


@pytest.mark.parametrize("flag", ["-b", "--precision", "--calib", "--calib-samples", "--calib-method", "--json",
                                  "--resume", "-f", "--store", "--weights", "--device",
                                  *(f for f in MODEL_FLAGS if f != "--input-size")])
def test_a_shared_option_is_declared_the_same_way_everywhere(flag):
    signatures = {name: _signature(_action(COMMANDS[name], flag)) for name in _having(flag)}
    assert len(signatures) >= 2
    assert len(set(signatures.values())) == 1, signatures


def test_the_options_spell_the_same():
    assert _action(COMMANDS["profile"], "-b").option_strings == ["-b", "--batch"]
    assert _action(COMMANDS["profile"], "-f").option_strings == ["-f", "--runtimes", "--formats"]
    for name in _having("--json"):
        a = _action(COMMANDS[name], "--json")
        assert isinstance(a, argparse._StoreTrueAction) and a.default is False, name


@pytest.mark.parametrize("name", sorted(_having("--batch")))
def test_batch_parses_the_same_way(name, tmp_path):
    from perfkit.vocab import parse_batches

    parser = build_parser()
    required = _required(name, tmp_path)
    short = parser.parse_args([name, *required, "-b", "1,8"])
    long = parser.parse_args([name, *required, "--batch", "1,8"])
    assert short.batch == long.batch == "1,8"
    default = parser.parse_args([name, *required]).batch
    if name == "sweep":  # unset: the sweep file's, else the API's default
        from perfkit.api.sweeps import DEFAULTS

        assert default is None
        default = DEFAULTS["batch"]
    assert parse_batches(default)  # every default is a valid comma list


@pytest.mark.parametrize("name", sorted(_having("--batch")))
@pytest.mark.parametrize("value", ["0", "1,x"])
def test_a_bad_batch_is_refused_the_same_way_before_anything_runs(name, value, tmp_path, capsys):
    assert main([name, *_required(name, tmp_path), "--weights", "random", "-b", value]
                if _action(COMMANDS[name], "--weights") else [name, *_required(name, tmp_path), "-b", value]) == 2
    captured = capsys.readouterr()
    [line] = captured.err.strip().splitlines()[-1:]
    assert line == f"error: --batch takes comma-separated positive integers, got '{value}'"
    assert captured.err.count("error:") == 1 and "Traceback" not in captured.err
    _no_run_started()


@pytest.mark.parametrize("name", sorted(_having("--precision")))
def test_precision_parses_the_same_way(name, tmp_path):
    from perfkit.vocab import Precision, parse_precisions

    parser = build_parser()
    required = _required(name, tmp_path)
    args = parser.parse_args([name, *required, "--precision", "fp16,bf16"])
    assert parse_precisions(args.precision) == [Precision.FP16, Precision.BF16]
    default = parser.parse_args([name, *required]).precision
    if name == "sweep":  # unset: the sweep file's, else the API's default
        from perfkit.api.sweeps import DEFAULTS

        assert default is None
        default = DEFAULTS["precision"]
    # perfkit run's default is the automatic plan (fp32, plus int8 where a runtime builds it); the others: fp32
    assert default == "auto" if name == "run" else parse_precisions(default) == [Precision.FP32]


@pytest.mark.parametrize("name", sorted(_having("--precision")))
def test_an_unknown_precision_is_refused_the_same_way(name, tmp_path, capsys):
    assert main([name, *_required(name, tmp_path), "--device", "cpu", "--precision", "fp32,fp64"]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("error:") == 1 and "Traceback" not in captured.err
    assert "error: unknown precision 'fp64'; choose from: fp32, fp16, bf16, int8" in captured.err.strip().splitlines()[-1]
    _no_run_started()


@pytest.mark.parametrize("name", sorted(_having("--precision")))
def test_a_precision_a_runtime_cannot_run_names_what_it_supports(name, tmp_path, capsys):
    assert main([name, *_required(name, tmp_path), "--device", "cpu", "-f", "onnx", "--precision", "bf16"]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines()[-1] == ("error: onnx on cpu supports fp32, fp16, int8, not bf16 "
                                                     "(bf16 on cpu runs in: eager, torchscript, aoti, openvino)")
    assert captured.err.count("error:") == 1
    _no_run_started()


def test_profile_onnx_bf16_is_one_line(capsys):
    assert main(["profile", "lenet5", "-f", "onnx", "--precision", "bf16", "--weights", "random"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == ("error: onnx on cpu supports fp32, fp16, int8, not bf16 "
                                    "(bf16 on cpu runs in: eager, torchscript, aoti, openvino)")


def test_validate_int8_is_one_line_without_traceback(capsys):
    assert main(["validate", "lenet5", "--data", "X", "--precision", "int8"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    # eager alone is only the fp32 reference of int8: nothing would be measured
    assert captured.err.strip() == "error: eager on cpu supports fp32, fp16, bf16, not int8 (int8 on cpu runs in: onnx, aoti, openvino)"
    _no_run_started()


@pytest.mark.parametrize("runtimes, message", [
    ("eager,torchscript", "error: torchscript on cpu supports fp32, fp16, bf16, not int8 (int8 on cpu runs in: onnx, aoti, openvino)"),
    ("eager,native", "error: native on cpu supports fp32, not int8 (int8 on cpu runs in: onnx, aoti, openvino)"),
])
def test_int8_in_a_runtime_without_it_is_one_line_naming_where_it_runs(runtimes, message, capsys):
    assert main(["profile", "lenet5", "-f", runtimes, "--precision", "fp32,int8", "--weights", "random"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.strip() == message
    _no_run_started()


def test_eager_is_the_fp32_reference_of_int8_not_an_unsupported_combination(monkeypatch):
    from perfkit import env
    from perfkit.api.keywords import precisions
    from perfkit.backends import parse_backends
    from perfkit.vocab import Precision

    # the automatic plan follows the CPU (tests/backends/test_automatic_plan.py): an AVX2 CPU here
    monkeypatch.setattr(env, "cpu_flags", lambda path="/proc/cpuinfo": ["avx2", "fma"])

    backends = parse_backends("eager,onnx,aoti")
    assert precisions("fp32,int8", backends, "cpu") == [Precision.FP32, Precision.INT8]
    # perfkit run's automatic plan: fp32 and int8 where a runtime builds it (each runtime its own)
    assert precisions("auto", parse_backends("eager,torchscript"), "cpu") == [Precision.FP32]
    assert precisions("auto", backends, "cpu") == [Precision.FP32, Precision.INT8]
    # AOTInductor's int8 (a second compile per model) is asked for, not automatic; no bf16 without bf16 arithmetic
    assert precisions("auto", parse_backends("eager,aoti"), "cpu") == [Precision.FP32]
    assert precisions("fp32,int8", parse_backends("eager,torchscript,onnx"), "cpu",
                      lenient=True) == [Precision.FP32, Precision.INT8]


@pytest.mark.parametrize("name", sorted(_having("--resume")))
def test_resume_parses_the_same_way(name, tmp_path):
    parser = build_parser()
    required = _required(name, tmp_path)
    assert parser.parse_args([name, *required]).resume is None
    assert parser.parse_args([name, *required, "--resume"]).resume == "latest"
    assert parser.parse_args([name, *required, "--resume", "2026"]).resume == "2026"


@pytest.mark.parametrize("name", sorted(_having("--resume")))
def test_resuming_an_unknown_run_is_one_line(name, tmp_path, store, capsys):
    store.start_run("perfkit something")  # a store with a run, but not this one
    assert main([name, *_required(name, tmp_path), "--weights", "random", "--resume", "nope"]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("error:") == 1 and "Traceback" not in captured.err
    assert "no run in" in captured.err.strip().splitlines()[-1] and "match 'nope'" in captured.err
    assert len(store.runs()) == 1  # no new run


@pytest.mark.parametrize("name", sorted(_having("-f")))
def test_an_unknown_runtime_is_refused_the_same_way(name, tmp_path, capsys):
    assert main([name, *_required(name, tmp_path), "--device", "cpu", "-f", "eager,tflite"]) == 2
    captured = capsys.readouterr()
    line = captured.err.strip().splitlines()[-1]
    assert line.startswith("error: unknown runtime 'tflite'; choose from: eager, torchscript, onnx")
    _no_run_started()


def test_argparse_errors_are_one_line_exit_2(capsys):
    for argv in (["profile"], ["profile", "lenet5", "--iterations", "many"], ["nosuchcommand"],
                 ["select", "--max-latency-ms"]):
        assert main(argv) == 2, argv
        captured = capsys.readouterr()
        [line] = captured.err.strip().splitlines()
        assert line.startswith("error: perfkit") and "--help" in line and captured.out == "", argv


def test_an_unexpected_exception_is_one_line_exit_1_and_a_traceback_on_request(capsys, monkeypatch):
    import perfkit.cli.zoo

    def bug(all_models):
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(perfkit.cli.zoo, "rows", bug)
    assert main(["zoo"]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("internal error: ZeroDivisionError: oops") and "PERFKIT_DEBUG=1" in line
    monkeypatch.setenv("PERFKIT_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(["zoo"])


def _no_run_started() -> None:
    """Bad input is refused before a run is opened (the store is not even created)."""
    from pathlib import Path

    from perfkit.store import default_store

    path = Path(default_store())
    if path.exists():
        with Store(path, read_only=True) as s:
            assert s.runs() == [], "a run was started before the input was checked"
