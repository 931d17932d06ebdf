"""An artifact's manifest: the JSON beside the exported files that says what they are.

It records the model, precision, batch range, I/O, preprocessing, options, library versions and the
sha256 of every file; ``verify`` re-checks every file against it, so a truncated, edited, deleted or
unlisted file is refused by name instead of producing wrong numbers.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from perfkit.errors import ArtifactError

MANIFEST = "manifest.json"
MANIFEST_VERSION = 3  # 3: model identity, arch, reference runtime, checkpoint entry
REQUIRED_KEYS = ("manifest_version", "key", "backend", "precision", "device", "model", "inputs", "outputs",
                 "batch", "main_file", "files", "sha256")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hash_files(folder: Path) -> dict[str, dict]:
    """``{relative path: {sha256, bytes}}`` of every file under ``folder`` (the manifest excluded)."""
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        out[path.relative_to(folder).as_posix()] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    return out


def combined_sha256(files: dict[str, dict]) -> str:
    lines = "".join(f"{name}\t{info['sha256']}\n" for name, info in sorted(files.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"no manifest at {path}: its export did not finish, or the file was deleted; "
                            "export again with --force") from None
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot read artifact manifest {path}: {exc}; export again with --force") from None
    if not isinstance(manifest, dict):
        raise ArtifactError(f"artifact manifest {path} is not a JSON object; export again with --force")
    if manifest.get("manifest_version") != MANIFEST_VERSION:
        raise ArtifactError(f"{path} has manifest version {manifest.get('manifest_version')}, this perfkit reads "
                            f"{MANIFEST_VERSION}; export again with --force")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise ArtifactError(f"artifact manifest {path} lacks {', '.join(missing)}; export again with --force")
    return manifest


def verify(folder: str | Path) -> dict:
    """Read the manifest of ``folder`` and check every file against it.

    Refused, naming the file: a listed file missing, truncated or changed; a file in the folder the
    manifest does not list; a list that does not include the main file (an emptied list would
    otherwise switch every check off).
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    files = manifest["files"]
    where = folder / MANIFEST
    if not isinstance(files, dict) or manifest["main_file"] not in files:
        raise ArtifactError(f"{where} does not list the main file {manifest['main_file']}: the manifest was "
                            "edited; export again with --force")
    if combined_sha256(files) != manifest["sha256"]:
        raise ArtifactError(f"{where}: the file list does not match the artifact's digest (edited manifest); "
                            "export again with --force")
    for name, info in files.items():
        path = folder / name
        if not path.is_file():
            raise ArtifactError(f"artifact file {path} is missing; export again with --force")
        size = path.stat().st_size
        if size != info.get("bytes"):
            raise ArtifactError(f"artifact file {path} is truncated or changed: {size} bytes, the manifest says "
                                f"{info.get('bytes')}; export again with --force")
        if sha256_file(path) != info.get("sha256"):
            raise ArtifactError(f"artifact file {path} has been modified (sha256 differs from the manifest); "
                                "export again with --force")
    unlisted = [p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST
                and p.relative_to(folder).as_posix() not in files]
    if unlisted:
        raise ArtifactError(f"artifact file {unlisted[0]} is not listed in {where}; export again with --force")
    return manifest
