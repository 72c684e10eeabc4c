"""The bin schemas the hub accepts batches for.

A batch's codes mean something only under the schema they were binned with, so the hub
accepts a batch only if it knows that schema: from the bundles or schema JSON files it was
started with (default: the built-in schema), and from every signed release published
through it (a gateway running that release aggregates with its schema).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from pathlib import Path

from fraudscreen.binschema import BinSchema
from fraudscreen.model.bundle import MANIFEST_FILE, load_bundle


def load_schema(path: Path) -> BinSchema:
    """A schema from a bundle directory, its manifest.json, or a bin schema JSON file."""
    path = Path(path)
    if path.is_dir():
        schema = load_bundle(path).bin_schema
        if schema is None:
            raise ValueError(
                f"bundle {path} has no bin schema; give a bundle trained with one, or the "
                "schema JSON file"
            )
        return schema
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(
            f"schema {path} does not exist; give a bundle directory or a schema JSON file"
        ) from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read schema {path}: {exc}") from exc
    if isinstance(data, dict) and "bin_schema" in data:  # a bundle's manifest.json
        data = data["bin_schema"]
    if not isinstance(data, dict):
        raise ValueError(
            f"{path} is not a bin schema (expected an object with 'features' and 'edges', "
            f"or a bundle {MANIFEST_FILE} with 'bin_schema')"
        )
    try:
        return BinSchema.from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path} is not a valid bin schema ({exc})") from exc


class SchemaRegistry:
    """hash -> schema; grows when a release brings a new schema (thread-safe)."""

    def __init__(self, schemas: Iterable[BinSchema]) -> None:
        self._lock = threading.Lock()
        self._schemas = {schema.hash: schema for schema in schemas}

    def get(self, schema_hash: str) -> BinSchema | None:
        return self._schemas.get(schema_hash)

    def add(self, schema: BinSchema) -> bool:
        """True if the schema was new."""
        with self._lock:
            if schema.hash in self._schemas:
                return False
            self._schemas = {**self._schemas, schema.hash: schema}
            return True

    def hashes(self) -> tuple[str, ...]:
        return tuple(sorted(self._schemas))
