"""Run history: the ``Record`` schema and its SQLite store."""

from perfkit.results import Kind
from perfkit.store.schema import SCHEMA_VERSION, SCHEMAS, Record
from perfkit.store.sqlite import Store, default_store_path

__all__ = ["SCHEMAS", "SCHEMA_VERSION", "Kind", "Record", "Store", "default_store_path"]
