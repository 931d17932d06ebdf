"""Run history: the ``Record`` schema and its SQLite store."""

from perfkit.store.schema import SCHEMA_VERSION, Kind, Record
from perfkit.store.sqlite import Store, default_store_path

__all__ = ["SCHEMA_VERSION", "Kind", "Record", "Store", "default_store_path"]
