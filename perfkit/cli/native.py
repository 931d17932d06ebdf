"""perfkit build-native: build the C++ LibTorch runner (used by `-f native`)."""

from __future__ import annotations

from pathlib import Path

from perfkit.cli import options as O


def add(sub) -> None:
    p = O.command(sub, "build-native", "build the C++ LibTorch runner (used by `-f native`)",
                  "Configure and compile perfkit/native/runner.cpp with CMake against the LibTorch inside the\n"
                  "installed torch wheel (needs cmake >= 3.18 and a C++20 compiler). The build is cached and\n"
                  "reused while the sources and torch are unchanged.", "perfkit build-native --force")
    p.add_argument("--build-dir", type=Path, default=None,
                   help="build folder; default $PERFKIT_NATIVE_BUILD or <artifacts>/native-build")
    p.add_argument("--force", action="store_true", help="rebuild even when the cached build is up to date")
    O.artifacts(p)
    O.json_flag(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from perfkit.backends.native import build_native, default_build_dir
    from perfkit.report.console import banner, console, print_json

    if not args.json:
        banner("building the native runner (about 30 s on 2 cores) ...", style="dim")
    build = build_native(args.build_dir or default_build_dir(args.artifacts), force=args.force)
    out = {"binary": str(build.binary), "build_dir": str(build.build_dir), "rebuilt": build.rebuilt,
           "build_seconds": build.seconds, "aoti_loader": build.aoti}
    if args.json:
        print_json(out)
        return 0
    what = f"built in {build.seconds:.1f} s" if build.rebuilt else "up to date (reused)"
    console.print(f"native runner {what}: {build.binary}\n"
                  f"AOTInductor .pt2 loader: {'yes' if build.aoti else 'no (TorchScript only)'}")
    return 0
