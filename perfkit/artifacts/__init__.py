"""Artifacts shared by every backend: the cache, keys, manifests, hashing and atomic publishing."""

from perfkit.artifacts.cache import (
    INPUT_NAME, OUTPUT_NAME, Artifact, ExportRequest, ExportResult, FixedIO, cache_key, device_identity, ensure_artifact,
    key_dir, load_artifact, remove_stale_temporaries, save_through_python,
)
from perfkit.artifacts.capture import capture_messages
from perfkit.artifacts.manifest import MANIFEST, hash_files, read_manifest, sha256_file, verify

__all__ = [
    "INPUT_NAME", "MANIFEST", "OUTPUT_NAME", "Artifact", "ExportRequest", "ExportResult", "FixedIO", "cache_key", "capture_messages",
    "device_identity", "ensure_artifact", "hash_files", "key_dir", "load_artifact", "read_manifest",
    "remove_stale_temporaries", "save_through_python", "sha256_file", "verify",
]
