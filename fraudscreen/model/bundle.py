"""The model bundle: a directory an analyst produces and a gateway trusts only after checks.

    model.txt      LightGBM model text
    golden.json    rows (missing = null) with LightGBM's scores, for compile parity
    branches.json  optional: how often each branch is taken on training data; the code
                   generator orders branches by it (~1.5x faster scoring)
    manifest.json  format version, model version, feature names in order, thresholds,
                   training summary, metrics, bin schema (what gateways aggregate with;
                   and, with model_input "bin_codes", what the model reads), sha256 of
                   every file
    manifest.sig   Ed25519 signature of manifest.json (signed releases only)

A *stacked* bundle (model_input "stacked", trained at the hub from score-band tables) is a
correction of one deployed model: model.txt/golden.json are the correction (it reads the
codes of the score-band schema: features + the deployed score), and the bundle ships the
deployed model too, as base.model.txt/base.golden.json, hashed and signed with the rest;
the manifest's "base" names its version and model sha256. Shipping it (rather than only
referencing it) keeps a release self-contained: a gateway that no longer holds that
version can still serve the correction, and the compile cache (keyed by the model's
sha256) makes the base compile a cache hit where it was served before.

Loading re-hashes every file and refuses anything that does not match the code that will
feed it: a different feature list, or a model LightGBM would read differently from
Treelite (`zero_as_missing`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fraudscreen.atomic_file import write_atomically
from fraudscreen.binschema import BinSchema
from fraudscreen.features.definitions import FEATURE_NAMES, FEATURE_SCHEMA_VERSION
from fraudscreen.score_bands import DEPLOYED_SCORE, reads_score

BUNDLE_FORMAT_VERSION = 1
MODEL_FILE = "model.txt"
GOLDEN_FILE = "golden.json"
BRANCHES_FILE = "branches.json"  # optional: branch frequencies for the code generator
MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "manifest.sig"

MODEL_INPUT_RAW = "raw"  # the model reads the feature values
MODEL_INPUT_BIN_CODES = "bin_codes"  # trained from aggregates: reads the bin schema's codes
MODEL_INPUT_STACKED = "stacked"  # a correction (bin codes) of the base model it ships
BASE_MODEL_FILE = "base.model.txt"
BASE_GOLDEN_FILE = "base.golden.json"

_MISSING_TYPE_ZERO = 1  # LightGBM decision_type bits 2-3: 0 none, 1 zero, 2 NaN


class BundleError(ValueError):
    """A bundle that must not be served; the message says what to do about it."""


@dataclass(frozen=True)
class Thresholds:
    """Score cut-offs: score >= decline -> DECLINE, >= review -> REVIEW, else APPROVE."""

    review: float
    decline: float

    def __post_init__(self) -> None:
        if not (0.0 <= self.review <= self.decline <= 1.0):
            raise BundleError(
                f"thresholds must satisfy 0 <= review <= decline <= 1, got "
                f"review={self.review}, decline={self.decline}"
            )


@dataclass(frozen=True)
class GoldenRows:
    """Rows with the score LightGBM gave them when the bundle was made."""

    rows: list[list[float]]
    scores: list[float]

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": [[None if math.isnan(v) else v for v in row] for row in self.rows],
            "scores": self.scores,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GoldenRows:
        rows = [[math.nan if v is None else float(v) for v in row] for row in data["rows"]]
        scores = [float(s) for s in data["scores"]]
        if len(rows) != len(scores) or not rows:
            raise BundleError(f"{GOLDEN_FILE} needs as many scores as rows, and at least one")
        return cls(rows, scores)


@dataclass(frozen=True)
class Manifest:
    model_version: str
    features: tuple[str, ...]
    thresholds: Thresholds
    files: dict[str, str]
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    bin_schema: dict[str, Any] | None = None
    created_at: str = ""
    model_input: str = MODEL_INPUT_RAW
    format_version: int = BUNDLE_FORMAT_VERSION
    feature_schema_version: int = FEATURE_SCHEMA_VERSION
    base: dict[str, Any] | None = None  # stacked: the deployed model this corrects

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "format_version": self.format_version,
            "model_version": self.model_version,
            "feature_schema_version": self.feature_schema_version,
            "features": list(self.features),
            "thresholds": {"review": self.thresholds.review, "decline": self.thresholds.decline},
            "training": self.training,
            "metrics": self.metrics,
            "bin_schema": self.bin_schema,
            "model_input": self.model_input,
            "created_at": self.created_at,
            "files": dict(sorted(self.files.items())),
        }
        if self.base is not None:  # only then: older manifests keep their exact bytes
            data["base"] = self.base
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Manifest:
        try:
            return cls(
                format_version=int(data["format_version"]),
                model_version=str(data["model_version"]),
                feature_schema_version=int(data["feature_schema_version"]),
                features=tuple(str(f) for f in data["features"]),
                thresholds=Thresholds(
                    float(data["thresholds"]["review"]), float(data["thresholds"]["decline"])
                ),
                training=dict(data.get("training") or {}),
                metrics=dict(data.get("metrics") or {}),
                bin_schema=data.get("bin_schema"),
                model_input=str(data.get("model_input", MODEL_INPUT_RAW)),
                created_at=str(data.get("created_at", "")),
                files={str(k): str(v) for k, v in data["files"].items()},
                base=dict(data["base"]) if data.get("base") is not None else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(
                f"{MANIFEST_FILE} is malformed ({exc!r}); rebuild the bundle"
            ) from exc

    def encode(self) -> bytes:
        """The exact bytes that are hashed and signed."""
        return (json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n").encode()


@dataclass(frozen=True)
class Bundle:
    """A verified bundle on disk."""

    path: Path
    manifest: Manifest
    model_text: str
    golden: GoldenRows
    bin_schema: BinSchema | None = None
    base: Bundle | None = None  # stacked: the deployed model, as a bundle of its own

    @property
    def branches_path(self) -> Path | None:
        """Branch statistics from training data, if the bundle carries them (verified)."""
        return self.path / BRANCHES_FILE if BRANCHES_FILE in self.manifest.files else None

    @property
    def reads_bin_codes(self) -> bool:
        return self.manifest.model_input == MODEL_INPUT_BIN_CODES

    @property
    def is_stacked(self) -> bool:
        return self.manifest.model_input == MODEL_INPUT_STACKED

    @property
    def correction(self) -> Bundle:
        """A stacked bundle's correction model as a code-reading bundle of its own (what
        compiling and parity checks take: its width is the score-band schema's)."""
        if self.bin_schema is None or not self.is_stacked:
            raise BundleError(f"{self.path} is not a stacked bundle")
        manifest = replace(
            self.manifest,
            features=self.bin_schema.features,
            model_input=MODEL_INPUT_BIN_CODES,
            base=None,
        )
        return replace(self, manifest=manifest, base=None)

    @property
    def input_schema(self) -> BinSchema | None:
        """The schema that turns feature rows into this model's input, if it reads codes
        (`load_bundle` refuses a code-reading bundle without one)."""
        return self.bin_schema if self.reads_bin_codes else None

    @property
    def model_version(self) -> str:
        return self.manifest.model_version

    @property
    def model_sha256(self) -> str:
        return self.manifest.files[MODEL_FILE]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_bundle(path: Path, *, expected_features: Sequence[str] | None = None) -> Bundle:
    """Read a bundle and check hashes, feature list and model compatibility.

    `expected_features` defaults to the code's own feature list; a bundle with a bin
    schema is checked against the same list (its transform maps those features to codes).
    """
    path = Path(path)
    manifest_path = path / MANIFEST_FILE
    if not path.exists():
        raise BundleError(f"no model bundle at {path}: that directory does not exist")
    if not path.is_dir():
        raise BundleError(f"{path} is not a model bundle: a bundle is a directory")
    if not manifest_path.is_file():
        raise BundleError(f"{path} is not a model bundle: {MANIFEST_FILE} is missing")
    try:
        manifest = Manifest.from_json(json.loads(manifest_path.read_text()))
    except json.JSONDecodeError as exc:
        raise BundleError(f"{manifest_path} is not valid JSON ({exc}); rebuild the bundle") from exc
    if manifest.format_version != BUNDLE_FORMAT_VERSION:
        raise BundleError(
            f"{path}: bundle format {manifest.format_version} is not supported "
            f"(this gateway reads format {BUNDLE_FORMAT_VERSION}); upgrade fraudscreen"
        )
    _verify_hashes(path, manifest)
    expected = tuple(expected_features if expected_features is not None else FEATURE_NAMES)
    if manifest.features != expected:
        raise BundleError(
            f"{path}: the model was trained on features {_diff(manifest.features, expected)}; "
            "retrain it with this version of fraudscreen"
        )
    stacked = manifest.model_input == MODEL_INPUT_STACKED
    width = len(expected) + (1 if stacked else 0)  # a correction also reads the base score
    model_text, golden = _model_and_golden(path, MODEL_FILE, GOLDEN_FILE, width)
    schema = _bin_schema(path, manifest, expected)
    base = _base_bundle(path, manifest, expected, schema) if stacked else None
    return Bundle(
        path=path,
        manifest=manifest,
        model_text=model_text,
        golden=golden,
        bin_schema=schema,
        base=base,
    )


def _model_and_golden(
    path: Path, model_file: str, golden_file: str, width: int
) -> tuple[str, GoldenRows]:
    model_text = (path / model_file).read_text()
    check_model_text(model_text, width, where=str(path / model_file))
    golden = GoldenRows.from_json(json.loads((path / golden_file).read_text()))
    if any(len(row) != width for row in golden.rows):
        raise BundleError(f"{path}: {golden_file} rows do not have {width} values each")
    return model_text, golden


def _base_bundle(
    path: Path, manifest: Manifest, features: Sequence[str], schema: BinSchema | None
) -> Bundle:
    """The deployed model a stacked bundle corrects, as a raw-feature bundle of its own."""
    base = manifest.base or {}
    version = base.get("model_version")
    missing = [n for n in (BASE_MODEL_FILE, BASE_GOLDEN_FILE) if n not in manifest.files]
    if not isinstance(version, str) or missing:
        raise BundleError(
            f"{path}: a stacked bundle needs base.model_version and {BASE_MODEL_FILE}, "
            f"{BASE_GOLDEN_FILE} in its files; rebuild it with `fraudscreen train --from-hub`"
        )
    if base.get("model_sha256") != manifest.files[BASE_MODEL_FILE]:
        raise BundleError(f"{path}: base.model_sha256 does not match {BASE_MODEL_FILE}")
    if schema is None or not reads_score(schema) or schema.model_version != version:
        raise BundleError(
            f"{path}: a stacked bundle needs the score-band schema of its base model {version}"
        )
    model_text, golden = _model_and_golden(path, BASE_MODEL_FILE, BASE_GOLDEN_FILE, len(features))
    base_manifest = Manifest(
        model_version=version,
        features=tuple(features),
        thresholds=manifest.thresholds,
        files={
            MODEL_FILE: manifest.files[BASE_MODEL_FILE],
            GOLDEN_FILE: manifest.files[BASE_GOLDEN_FILE],
        },
        bin_schema=manifest.bin_schema,
        created_at=manifest.created_at,
    )
    return Bundle(
        path=path, manifest=base_manifest, model_text=model_text, golden=golden, bin_schema=schema
    )


def _bin_schema(path: Path, manifest: Manifest, features: Sequence[str]) -> BinSchema | None:
    if manifest.model_input not in (MODEL_INPUT_RAW, MODEL_INPUT_BIN_CODES, MODEL_INPUT_STACKED):
        raise BundleError(f"{path}: unknown model_input {manifest.model_input!r}")
    if manifest.bin_schema is None:
        if manifest.model_input == MODEL_INPUT_BIN_CODES:
            raise BundleError(f"{path}: model reads bin codes but the bundle has no bin schema")
        return None
    try:
        schema = BinSchema.from_json(manifest.bin_schema)
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{path}: bin schema is malformed ({exc}); rebuild the bundle") from exc
    # a score-band schema bins the model's features and then its own score (DEPLOYED_SCORE)
    binned_inputs = tuple(features) + ((DEPLOYED_SCORE,) if reads_score(schema) else ())
    if schema.features != binned_inputs:
        raise BundleError(f"{path}: bin schema lists other features than the model")
    if reads_score(schema) and manifest.model_input == MODEL_INPUT_BIN_CODES:
        raise BundleError(f"{path}: a model that reads bin codes cannot bin its own score")
    if manifest.model_input == MODEL_INPUT_STACKED:
        return schema  # it bands the base model's scores: checked by _base_bundle
    if schema.model_version is not None and schema.model_version != manifest.model_version:
        raise BundleError(
            f"{path}: bin schema bands the scores of {schema.model_version}, not of this "
            f"model ({manifest.model_version})"
        )
    return schema


def check_model_text(model_text: str, num_features: int, *, where: str) -> None:
    """Refuse model text that the compiled path would score differently or wrongly."""
    header = re.search(r"^max_feature_idx=(\d+)$", model_text, re.MULTILINE)
    if header is None or not model_text.startswith("tree"):
        raise BundleError(f"{where} is not a LightGBM model text file")
    if int(header.group(1)) + 1 != num_features:
        raise BundleError(
            f"{where} expects {int(header.group(1)) + 1} features, the manifest lists "
            f"{num_features}; the bundle is inconsistent, rebuild it"
        )
    objective = re.search(r"^objective=(\S+)", model_text, re.MULTILINE)
    if objective is None or objective.group(1) != "binary":
        raise BundleError(f"{where} is not a binary classifier (objective=binary required)")
    if re.search(r"^\[zero_as_missing: (1|true)\]$", model_text, re.MULTILINE):
        raise BundleError(_ZERO_AS_MISSING.format(where=where))
    for line in re.findall(r"^decision_type=(.*)$", model_text, re.MULTILINE):
        if any((int(v) >> 2) & 3 == _MISSING_TYPE_ZERO for v in line.split()):
            raise BundleError(_ZERO_AS_MISSING.format(where=where))


_ZERO_AS_MISSING = (
    "{where} was trained with zero_as_missing=true, which the compiled predictor does not "
    "reproduce; retrain with zero_as_missing=false"
)


def write_bundle(
    path: Path,
    *,
    model_text: str,
    golden: GoldenRows,
    model_version: str,
    thresholds: Thresholds,
    training: dict[str, Any],
    metrics: dict[str, Any],
    created_at: str,
    bin_schema: dict[str, Any] | None = None,
    model_input: str = MODEL_INPUT_RAW,
    features: Sequence[str] = FEATURE_NAMES,
    branches: bytes | None = None,
    extra_files: Mapping[str, bytes] | None = None,
    base: dict[str, Any] | None = None,
) -> Manifest:
    """Write a bundle directory (replacing its files); the manifest hashes what was written."""
    path.mkdir(parents=True, exist_ok=True)
    _write_public(path / MODEL_FILE, model_text.encode())
    _write_public(path / GOLDEN_FILE, (json.dumps(golden.to_json()) + "\n").encode())
    names = [MODEL_FILE, GOLDEN_FILE]
    if branches is not None:
        _write_public(path / BRANCHES_FILE, branches)
        names.append(BRANCHES_FILE)
    else:
        (path / BRANCHES_FILE).unlink(missing_ok=True)
    for name, content in (extra_files or {}).items():
        _write_public(path / name, content)
        names.append(name)
    signature = path / SIGNATURE_FILE
    if signature.exists():
        signature.unlink()  # a signature over the old manifest would be a lie
    manifest = Manifest(
        model_version=model_version,
        features=tuple(features),
        thresholds=thresholds,
        files={name: sha256_file(path / name) for name in names},
        training=training,
        metrics=metrics,
        bin_schema=bin_schema,
        model_input=model_input,
        created_at=created_at,
        base=base,
    )
    _write_public(path / MANIFEST_FILE, manifest.encode())
    return manifest


def rewrite_manifest(bundle_path: Path, manifest: Manifest) -> None:
    """Replace the manifest (e.g. to add metrics); drops a now-stale signature."""
    signature = bundle_path / SIGNATURE_FILE
    if signature.exists():
        signature.unlink()
    _write_public(bundle_path / MANIFEST_FILE, manifest.encode())


def _verify_hashes(path: Path, manifest: Manifest) -> None:
    for required in (MODEL_FILE, GOLDEN_FILE):
        if required not in manifest.files:
            raise BundleError(f"{path}: manifest does not list {required}; rebuild the bundle")
    for name, expected in manifest.files.items():
        if "/" in name or name.startswith("."):
            raise BundleError(f"{path}: manifest lists an unsafe file name {name!r}")
        file_path = path / name
        if not file_path.is_file():
            raise BundleError(f"{path}: {name} is missing; the bundle is incomplete")
        actual = sha256_file(file_path)
        if actual != expected:
            raise BundleError(
                f"{path}: {name} does not match its sha256 in the manifest "
                f"(expected {expected[:12]}…, found {actual[:12]}…); the bundle was altered "
                "or damaged, fetch it again"
            )


def _diff(found: Sequence[str], expected: Sequence[str]) -> str:
    extra = [f for f in found if f not in expected]
    missing = [f for f in expected if f not in found]
    if not extra and not missing:
        return "in a different order than this code computes them"
    parts = []
    if extra:
        parts.append(f"that this code does not compute ({', '.join(extra)})")
    if missing:
        parts.append(f"without {', '.join(missing)}")
    return " and ".join(parts)


def _write_public(target: Path, data: bytes) -> None:
    write_atomically(target, data, mode=0o644)  # bundles are public artefacts
