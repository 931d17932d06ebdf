"""Run history: the ``Record`` schema and the store that keeps it (SQLite or PostgreSQL, by URL)."""

from perfkit.results import Kind
from perfkit.store.base import Store, default_store
from perfkit.store.schema import SCHEMA_VERSION, SCHEMAS, Record
from perfkit.store.tables import STORE_VERSION

__all__ = ["SCHEMAS", "SCHEMA_VERSION", "STORE_VERSION", "Kind", "Record", "Store", "default_store"]
