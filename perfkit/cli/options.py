"""The shared command-line vocabulary: one definition per option, used by every command.

- ``-f/--runtimes``: a comma list of backends (their names come from the registry).
- ``-b/--batch``: a comma list of batch sizes.
- ``--precision``: a comma list, checked against what each chosen backend runs on the device (the
  reference, eager, is exempt: it runs the float precisions and is the fp32 reference of int8).
- ``--calib DIR|synthetic``, ``--calib-samples``, ``--calib-method``: the int8 calibration set.
- ``--json``: JSON on stdout instead of tables (``--json-out FILE`` writes a file).
- ``--resume [RUN]``: continue an earlier run.
- ``--scenario NAME[,NAME]``: the scenarios measured besides SingleStream (their names and options come
  from the scenario registry, ``perfkit.profiler.scenarios``).
- the model (``model``): MODEL, ``--model-code``, ``--weights``, ``--num-classes``, ``--ema``,
  ``--input-size``, ``--reference`` (an engine's) and the preprocessing group
  (``--mean/--std/--resize/--crop/--interpolation``);
  ``model_keywords`` turns them into ``perfkit.zoo.sources.resolve``'s keywords (the same names).
- backend options (``--opset``, ``--script``, ...): generated from the backends' declarations.
Every unknown or unsupported value is a one-line error with exit code 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from perfkit.errors import UsageError

EPILOG_COMMON = ("Records go to the run store (--store, $PERFKIT_STORE, default reports/perfkit.db); "
                 "artifacts to --artifacts ($PERFKIT_ARTIFACTS, default the user cache folder, e.g. ~/.cache/perfkit/artifacts).")


class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions as written; an option's default shown once: not where its help already says it, nor
    where the default is None (generated options resolve theirs later and say so in their help)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "(default:" in text or action.default is None:
            return text
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad argument raises a UsageError (one line, exit 2) instead of printing usage."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def command(sub, name: str, help: str, description: str, example: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=description, formatter_class=Formatter,
                          epilog=f"example:\n  {example}\n\n{EPILOG_COMMON}")


# -- the shared options -----------------------------------------------------------------------------

def store(p) -> None:
    p.add_argument("--store", default=None, metavar="FILE|URL",
                   help="run store: a SQLite file (or sqlite:///FILE), or postgresql://USER@HOST:PORT/DB for one "
                        "shared by many machines (perfkit[postgres]); default $PERFKIT_STORE or reports/perfkit.db")


def json_flag(p) -> None:
    p.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout instead of tables")


def hardware(p, what: str, more: str = "") -> None:
    p.add_argument("--hardware", default=None, metavar="TEXT",
                   help=f"only {what} measured on hardware whose key is TEXT or whose label contains TEXT "
                        f"(case-insensitive), e.g. epyc, 'H100', avx512_vnni or a key from `perfkit runs`{more}")


def weights(p, default: str = "auto") -> None:
    p.add_argument("--weights", default=default,
                   help="auto (pretrained if cached, else random and labelled so), default (pretrained, "
                        "fail when not cached), random, a weights enum name (IMAGENET1K_V2), or a checkpoint file: "
                        "a state dict, or a training checkpoint holding one (under model, state_dict, ...; "
                        "DDP/torch.compile/Lightning key prefixes are stripped), loaded with "
                        "torch.load(weights_only=True)")


MODEL_HELP = ("a zoo name: resnet18, resnet50:IMAGENET1K_V2, any torchvision classifier, timm:<name>, lenet5 "
              "(`perfkit zoo`), an ONNX file (path/to/model.onnx: one image input, one logits output; run by the "
              "runtimes that start from ONNX, judged against ONNX Runtime fp32 on the CPU), or an engine someone "
              "built, run in its own runtime only and judged against --reference: an OpenVINO IR (model.xml, its "
              ".bin beside it), TorchScript (model.pt/.ts), an AOTInductor package (model.pt2), a TensorRT engine "
              "(model.engine/.plan); omitted with --model-code")


def model(p, *, positional: str | None = "one", weights_default: str = "auto") -> None:
    """The model a command measures: MODEL (``one``; ``many``: MODEL..., ``None``: the command adds
    its own), ``--model-code``, ``--weights``, ``--num-classes``, ``--ema``, ``--input-size`` and
    the preprocessing group."""
    if positional == "one":
        p.add_argument("model", nargs="?", metavar="MODEL", help=MODEL_HELP)
    elif positional == "many":
        p.add_argument("models", nargs="*", metavar="MODEL", help=f"one or more models (evaluated one after the "
                                                                  f"other): {MODEL_HELP}")
    g = p.add_argument_group("the model: a zoo architecture with your head and checkpoint, or your own nn.Module")
    weights(g, weights_default)
    g.add_argument("--num-classes", type=int, default=None, metavar="N",
                   help="the classifier has N outputs (a checkpoint's own head; a head that does not fit is named "
                        "with both shapes). Default: the architecture's own")
    g.add_argument("--ema", action="store_true",
                   help="use a checkpoint's EMA weights (state_dict_ema / model_ema); default: its trained weights "
                        "(the EMA only when the file holds nothing else), as timm's validate.py without --use-ema")
    g.add_argument("--model-code", default=None, metavar="FILE.py:CALLABLE",
                   help="your own nn.Module, instead of MODEL: FILE.py:CALLABLE or package.module:CALLABLE, a "
                        "function returning the module (called with num_classes=N when it takes that parameter and "
                        "--num-classes is given). This imports and RUNS YOUR CODE, as Python imports it: FILE's "
                        "folder is added to the end of sys.path (so it imports its siblings); package.module is "
                        "imported from sys.path (the current folder added last). Needs --input-size")
    g.add_argument("--reference", default=None, metavar="SOURCE",
                   help="what an engine MODEL (model.xml, .pt, .pt2, .engine) is judged against by check and "
                        "validate: an ONNX file (run by ONNX Runtime fp32 on the CPU), a zoo name or FILE.py:CALLABLE "
                        "/ package.module:CALLABLE (eager PyTorch; your code is imported and run, as with "
                        "--model-code). The model flags describe it: --weights, --num-classes and --ema are its own "
                        "(an engine carries its weights), --input-size and the preprocessing flags apply to both "
                        "(default: the engine's input size; the reference's preprocessing). Without it, check is "
                        "refused (nothing to compare with); validate counts against the labels, profile times")
    g.add_argument("--input-size", default=None, metavar="C,H,W|N",
                   help="the model's input: C,H,W, or N for N×N (required with --model-code, for an ONNX file "
                        "whose height and width are not fixed in its graph, and for an engine that does not record "
                        "its input: a scripted TorchScript module). For a zoo model: "
                        "build and feed it at this size instead of its native one (the crop follows it; published "
                        "numbers stay those of the native size)")
    preprocessing(p)


def preprocessing(p) -> None:
    """How images become inputs, for every command that feeds images (every change is recorded)."""
    from perfkit.zoo.sources import INTERPOLATIONS

    g = p.add_argument_group("preprocessing (default: the weights' own transform, timm's resolved config, or for "
                             "--model-code and ONNX files ImageNet mean/std with resize = crop / 0.875, bilinear; "
                             "every override is recorded)")
    g.add_argument("--mean", default=None, metavar="R,G,B", help="normalisation mean")
    g.add_argument("--std", default=None, metavar="R,G,B", help="normalisation std")
    g.add_argument("--resize", type=int, default=None, metavar="N", help="resize the short side to N")
    g.add_argument("--crop", type=int, default=None, metavar="N", help="center crop N×N: the model's input size")
    g.add_argument("--interpolation", default=None, choices=INTERPOLATIONS, help="resize interpolation")


def model_keywords(args) -> dict:
    """The model flags of ``args`` as ``perfkit.zoo.sources.resolve`` keywords (MODEL not included)."""
    return {"weights": getattr(args, "weights", "default"), "num_classes": getattr(args, "num_classes", None),
            "input_size": input_size(getattr(args, "input_size", None)),
            "model_code": getattr(args, "model_code", None), "ema": getattr(args, "ema", False),
            "reference": getattr(args, "reference", None),
            "mean": floats3(getattr(args, "mean", None), "mean"), "std": floats3(getattr(args, "std", None), "std"),
            "resize": getattr(args, "resize", None), "crop": getattr(args, "crop", None),
            "interpolation": getattr(args, "interpolation", None)}


def floats3(text: str | None, name: str) -> tuple[float, float, float] | None:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise UsageError(f"--{name} takes three comma-separated numbers (R,G,B), got '{text}'")
    return values


def input_size(text: str | None) -> tuple[int, int, int] | int | None:
    """``--input-size``: ``C,H,W`` or ``N`` (N×N with the model's channels)."""
    if text is None:
        return None
    try:
        dims = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        dims = ()
    if len(dims) not in (1, 3) or min(dims) < 1:
        raise UsageError(f"--input-size must be C,H,W or N (N×N), positive integers; got {text!r}")
    return dims[0] if len(dims) == 1 else dims


def artifacts(p) -> None:
    p.add_argument("--artifacts", type=Path, default=None,
                   help="artifact cache folder; default $PERFKIT_ARTIFACTS or the user cache folder (~/.cache/perfkit/artifacts on Linux)")


def device(p) -> None:
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (cuda when present)")


def runtimes(p, default: str, what: str = "runtimes") -> None:
    from perfkit.backends import all_backends

    names = ", ".join(b.name for b in all_backends())
    p.add_argument("-f", "--runtimes", "--formats", dest="runtimes", default=default,
                   help=f"comma-separated {what}: {names}")


def batch(p, default: str, help: str = "comma-separated batch sizes") -> None:
    p.add_argument("-b", "--batch", default=default, help=help)


def precision(p, default: str = "fp32") -> None:
    auto = (" auto: fp32, plus int8 in the runtimes whose automatic plan has it (ONNX Runtime on a CPU);"
            if default == "auto" else "")
    p.add_argument("--precision", default=default,
                   help=f"comma-separated precisions (fp32, fp16, bf16, int8);{auto} each checked against what every "
                        "chosen runtime supports on the device (eager is the fp32 reference of int8). int8 is "
                        "calibrated: see --calib")
    calibration(p)


def calibration(p) -> None:
    from perfkit.data.calibration import DEFAULT_SAMPLES, SYNTHETIC_SAMPLES, CalibrationMethod

    g = p.add_argument_group("int8 calibration (post-training quantization; part of the int8 artifact's cache key)")
    g.add_argument("--calib", default=None, metavar="DIR|synthetic",
                   help="images to calibrate int8 on: any image folder or ImageNet layout, through the model's own "
                        "preprocessing. Default: a seeded subset of --data where the command has it, else "
                        "`synthetic` (seeded generated images: builds and times int8, accuracy not meaningful; "
                        "every table says so)")
    g.add_argument("--calib-samples", type=int, default=None, metavar="N",
                   help=f"calibration images, a seeded selection (default {DEFAULT_SAMPLES}; {SYNTHETIC_SAMPLES} "
                        "synthetic)")
    g.add_argument("--calib-method", default="minmax", choices=tuple(m.value for m in CalibrationMethod),
                   help="how activation ranges are taken (ONNX Runtime; AOTInductor's x86 quantizer uses its own "
                        "observers)")


def data(p, *, required: bool = False, default: str = "") -> None:
    """``--data DIR`` and ``--labels FILE``: a labelled image set (``perfkit.data.open_dataset``)."""
    p.add_argument("--data", type=Path, required=required, default=None, metavar="DIR",
                   help="labelled images: ImageNet-val (WordNet-id class folders, flat ILSVRC2012_val_* files with "
                        "their ground truth, or a torchvision ImageNet root; ImageNet-1k labels) or an ImageFolder of "
                        "your classes (one sub-folder per class, images anywhere under it; class index = the sorted "
                        f"folder names, or --labels){default}")
    p.add_argument("--labels", type=Path, default=None, metavar="FILE",
                   help="the class names of an ImageFolder --data, one per line in the model's output order (default: "
                        "the sorted folder names, torchvision's ImageFolder convention); with WordNet-id folders it "
                        "replaces the ImageNet-1k index")


def threads(p) -> None:
    p.add_argument("--threads", type=int, default=None, help="CPU threads for every runtime (default: each one's tuned default)")


def scenario(p, default: str, *, quick: bool = False) -> None:
    """``--scenario`` and every scenario's options, generated from the scenario registry (``quick``:
    ``perfkit run``'s defaults)."""
    from perfkit.profiler.scenarios import all_scenarios

    scenarios = all_scenarios()
    p.add_argument("--scenario", default=default, metavar="NAME[,NAME]",
                   help="comma-separated scenarios; SingleStream is always measured (the others build on its "
                        "timing): " + "; ".join(f"{s.name}: {s.summary}" for s in scenarios))
    group = p.add_argument_group("scenario options (from each scenario's declaration)")
    for s in scenarios:
        for o in s.options:
            if o.type is bool:
                group.add_argument(o.flag, dest=f"scn_{o.name}", action=argparse.BooleanOptionalAction, default=None,
                                   help=f"{o.help} (default: {o.value(quick)})")
                continue
            metavar = o.metavar or ("N" if o.type is int else "SECONDS" if o.name.endswith("seconds") else "VALUE")
            group.add_argument(o.flag, dest=f"scn_{o.name}", type=o.type, default=None, metavar=metavar,
                               help=f"{o.help} (default: {o.value(quick)})")


def resume(p, what: str) -> None:
    p.add_argument("--resume", nargs="?", const="latest", default=None, metavar="RUN",
                   help=f"continue an earlier run (its id, a unique prefix, or latest; without a value: {what})")


def backend_options(p) -> None:
    """One flag per backend option, generated from the registry (shared names appear once)."""
    from perfkit.backends import options

    group = p.add_argument_group("runtime options (from each backend's declaration)")
    for option, owners in options():
        if not option.cli:  # set through a shared group of its own (calibration: --calib ...)
            continue
        help = f"{option.help} [{', '.join(owners)}]"
        if isinstance(option.default, bool):
            group.add_argument(option.flag, dest=f"opt_{option.name}", action=argparse.BooleanOptionalAction,
                               default=None, help=f"{help} (default: {option.default})")
        else:
            metavar = "N" if option.type is int else option.name.upper()  # not argparse's OPT_NAME from dest
            group.add_argument(option.flag, dest=f"opt_{option.name}", type=option.type or str, default=None,
                               metavar=metavar, help=f"{help} (default: {option.default})")


def batch_range(p) -> None:
    p.add_argument("--min-batch", type=int, default=1, help="smallest batch the artifact accepts")
    p.add_argument("--opt-batch", type=int, default=8, metavar="N", help="batch TensorRT tunes for (also the example batch)")
    p.add_argument("--max-batch", type=int, default=256, help="largest batch the artifact accepts")


# -- reading them back --------------------------------------------------------------------------------

def given_options(args) -> dict:
    """The backend options the user set (``--opset 18`` → ``{"opset": 18}``; ``--opt-batch`` is no backend option)."""
    from perfkit.backends import options

    given = ((o.name, getattr(args, f"opt_{o.name}", None)) for o, _ in options())
    return {name: value for name, value in given if value is not None}
