"""Compile a bundle's model to native code with Treelite + TL2cgen, on this machine.

Gateways compile from the (verified) model text and never load a shared library that came
over the network. Results are cached by model hash + compiler + platform + code generator,
so a restart does not recompile. Every load, cached or fresh, must reproduce the golden
scores (and LightGBM's own on the same rows) to 1e-6 or the library is not used.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from fraudscreen.logs import third_party_output_logged
from fraudscreen.model.bundle import BRANCHES_FILE, Bundle
from fraudscreen.model.predictor import Explainer, LightGBMPredictor, NativePredictor, Predictor

log = structlog.get_logger(__name__)

PARITY_TOLERANCE = 1e-6
LIBRARY_NAME = "predictor.so"


class CompileError(RuntimeError):
    """The model could not be compiled, or the compiled code disagrees with LightGBM."""


class CompilerNotFoundError(CompileError):
    pass


@dataclass(frozen=True)
class CompileOptions:
    """How to compile; everything here is part of the cache key."""

    compiler: str = "gcc"
    cache_dir: Path | None = None
    parallel_units: int = max(2, os.cpu_count() or 1)

    def resolved_cache_dir(self) -> Path:
        if self.cache_dir is not None:
            return Path(self.cache_dir)
        env = os.environ.get("FRAUDSCREEN_CACHE_DIR")
        if env:
            return Path(env)
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "fraudscreen" / "compiled"


@dataclass(frozen=True)
class CompiledModel:
    library: Path
    cache_key: str
    from_cache: bool
    seconds: float
    max_abs_diff: float


@functools.lru_cache(maxsize=8)
def compiler_identity(compiler: str) -> str:
    """First line of `<compiler> --version`; raises CompilerNotFoundError if it won't run.

    Cached per process: every load asks it for three cache keys (model, explainer, call
    wrapper); a failure is not cached, so installing gcc later is noticed."""
    if shutil.which(compiler) is None:
        raise CompilerNotFoundError(
            f"C compiler {compiler!r} not found on PATH; install gcc (apt install gcc) or set "
            "model.compiler in the config"
        )
    try:
        result = subprocess.run(
            [compiler, "--version"], capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise CompilerNotFoundError(f"C compiler {compiler!r} does not run: {exc}") from exc
    return result.stdout.splitlines()[0].strip() if result.stdout else compiler


def cache_key(bundle: Bundle, options: CompileOptions, compiler_id: str) -> str:
    import tl2cgen
    import treelite

    parts = {
        "model_sha256": bundle.model_sha256,
        "branches_sha256": bundle.manifest.files.get(BRANCHES_FILE, ""),
        "compiler": compiler_id,
        "platform": f"{sys.platform}-{platform.machine()}",
        "python_abi": sys.implementation.cache_tag,
        "treelite": treelite.__version__,
        "tl2cgen": tl2cgen.__version__,
        "parallel_units": options.parallel_units,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def compile_bundle(
    bundle: Bundle,
    options: CompileOptions | None = None,
    reference: LightGBMPredictor | None = None,
) -> CompiledModel:
    """Compile (or fetch from cache) and check parity; raises CompileError on any failure.

    `reference`: the bundle's model already loaded in LightGBM (else it is loaded here).
    """
    options = options or CompileOptions()
    compiler_id = compiler_identity(options.compiler)
    key = cache_key(bundle, options, compiler_id)
    target_dir = options.resolved_cache_dir() / key
    library = target_dir / LIBRARY_NAME
    started = time.perf_counter()
    from_cache = library.is_file()
    if from_cache:
        log.info("compile.cache_hit", model_version=bundle.model_version, library=str(library))
    else:
        _build(bundle, options, target_dir)
    max_diff = check_parity(bundle, library, options, reference)
    seconds = time.perf_counter() - started
    log.info(
        "compile.parity_ok",
        model_version=bundle.model_version,
        max_abs_diff=max_diff,
        golden_rows=len(bundle.golden.rows),
        seconds=round(seconds, 3),
    )
    return CompiledModel(library, key, from_cache, seconds, max_diff)


def _build(bundle: Bundle, options: CompileOptions, target_dir: Path) -> None:
    import tl2cgen
    import treelite

    target_dir.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    num_trees = bundle.model_text.count("\nTree=")
    log.info(
        "compile.start",
        model_version=bundle.model_version,
        trees=num_trees,
        compiler=options.compiler,
        units=options.parallel_units,
        hint="takes about 1 s per 50 trees on 2 cores",
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=target_dir.parent, prefix=".build-") as scratch:
        scratch_path = Path(scratch)
        model_file = scratch_path / "model.txt"
        model_file.write_text(bundle.model_text)
        with third_party_output_logged("fraudscreen.compile"):
            try:
                model = treelite.frontend.load_lightgbm_model(str(model_file))
                log.info("compile.generate_c", seconds=round(time.perf_counter() - started, 2))
                out_dir = scratch_path / "out"
                out_dir.mkdir()
                params: dict[str, object] = {"parallel_comp": options.parallel_units}
                if bundle.branches_path is not None:
                    params["annotate_in"] = str(bundle.branches_path)
                tl2cgen.export_lib(
                    model,
                    toolchain=options.compiler,
                    libpath=str(out_dir / LIBRARY_NAME),
                    params=params,
                    nthread=options.parallel_units,
                    verbose=False,
                )
            except Exception as exc:  # tl2cgen raises bare errors with the compiler log
                raise CompileError(
                    f"compiling {bundle.model_version} with {options.compiler} failed: {exc}"
                ) from exc
        if target_dir.exists():
            shutil.rmtree(target_dir)
        os.replace(out_dir, target_dir)
    log.info("compile.built", seconds=round(time.perf_counter() - started, 2))


def check_parity(
    bundle: Bundle,
    library: Path,
    options: CompileOptions | None = None,
    reference: LightGBMPredictor | None = None,
) -> float:
    """Max |compiled - expected| over golden rows, vs stored and local LightGBM scores."""
    width = len(bundle.manifest.features)
    native = NativePredictor(library, width, fast_call=load_native_call(options))
    reference = reference or LightGBMPredictor(bundle.model_text, width)
    rows = np.asarray(bundle.golden.rows, dtype=np.float64)
    compiled = np.array([native.predict_row(row) for row in bundle.golden.rows])
    if native.fast:
        via_ctypes = NativePredictor(library, width, fast_call=None)
        slow = np.array([via_ctypes.predict_row(row) for row in bundle.golden.rows])
        if not np.array_equal(compiled, slow):
            raise CompileError("the fast call path disagrees with ctypes on the golden rows")
    local = reference.predict_rows(rows)
    stored = np.asarray(bundle.golden.scores)
    worst = float(max(np.max(np.abs(compiled - local)), np.max(np.abs(compiled - stored))))
    if not worst <= PARITY_TOLERANCE:
        raise CompileError(
            f"compiled scores differ from LightGBM by {worst:.3g} (> {PARITY_TOLERANCE}) on "
            f"the golden rows of {bundle.model_version}; not using the compiled model. "
            "Clear the compile cache and report this model"
        )
    return worst


def load_predictor(
    bundle: Bundle,
    options: CompileOptions | None = None,
    reference: LightGBMPredictor | None = None,
    *,
    fallback: bool = True,
) -> Predictor:
    """The fastest correct predictor available: native, or LightGBM's with a loud warning.

    `fallback=False` raises the CompileError instead (a release must run natively).
    """
    try:
        compiled = compile_bundle(bundle, options, reference)
    except CompileError as exc:
        if not fallback:
            raise
        log.error(
            "predictor.fallback_to_lightgbm",
            model_version=bundle.model_version,
            reason=str(exc),
            impact="each score costs ~50-100 us instead of ~5 us; latency SLO at risk",
            action="install a C compiler (gcc) and restart, or fix the reason above",
        )
        return reference or LightGBMPredictor(bundle.model_text, len(bundle.manifest.features))
    return NativePredictor(
        compiled.library, len(bundle.manifest.features), fast_call=load_native_call(options)
    )


def _build_helper(
    options: CompileOptions, source: Path, name: str, flags: Sequence[str], key_extra: str
) -> Path:
    """Build (or fetch from the cache) one of our small C files as a shared library."""
    compiler_id = compiler_identity(options.compiler)
    key = hashlib.sha256(
        source.read_bytes() + compiler_id.encode() + key_extra.encode()
    ).hexdigest()[:32]
    target = options.resolved_cache_dir() / f"{source.stem}-{key}" / name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    scratch = target.with_name(f".build-{os.getpid()}-{name}")
    command = [
        options.compiler,
        "-O2",
        "-shared",
        "-fPIC",
        *flags,
        "-o",
        str(scratch),
        str(source),
        "-lm",
    ]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise CompileError(f"building {source.name} failed: {detail}") from exc
    os.replace(scratch, target)
    return target


def compile_explainer(options: CompileOptions | None = None) -> Path:
    """Build (or fetch from cache) the small C library behind `NativeExplainer`."""
    from fraudscreen.model.explain import EXPLAIN_SOURCE

    return _build_helper(
        options or CompileOptions(),
        EXPLAIN_SOURCE,
        "explain.so",
        ["-std=c99"],
        f"{sys.platform}-{platform.machine()}",
    )


def load_native_call(options: CompileOptions | None = None) -> Callable[[int, int], Any] | None:
    """The `Scorer` type of the small CPython extension in native_call.c, or None.

    It is built once per compiler/Python/platform into the cache and imported once per
    process; any failure means the ctypes path is used instead (slower by ~1.5 µs a row,
    still correct).
    """
    import importlib.machinery
    import sysconfig

    options = options or CompileOptions()
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    try:
        library = _build_helper(
            options,
            Path(__file__).with_name("native_call.c"),
            f"_fraudscreen_native{suffix}",
            [f"-I{sysconfig.get_paths()['include']}"],
            suffix,
        )
        return _import_scorer(library)
    except (OSError, ImportError, CompileError) as exc:
        log.warning(
            "native_call.unavailable",
            reason=str(exc),
            impact="scoring uses ctypes: ~1.5 µs slower per row",
            action="install the Python headers (Debian/Ubuntu: apt install python3-dev) "
            "and restart; the build is retried then",
        )
        return None


@functools.lru_cache(maxsize=4)
def _import_scorer(library: Path) -> Callable[[int, int], Any]:
    import importlib.util

    spec = importlib.util.spec_from_file_location("_fraudscreen_native", library)
    if spec is None or spec.loader is None:
        raise ImportError(f"{library} is not an importable extension module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    scorer: Callable[[int, int], Any] = module.Scorer
    return scorer


def load_explainer(
    bundle: Bundle,
    options: CompileOptions | None = None,
    reference: LightGBMPredictor | None = None,
) -> Explainer:
    """Native contributions checked against LightGBM's raw score, or LightGBM's TreeSHAP."""
    from fraudscreen.model.explain import CONTRIB_TOLERANCE, NativeExplainer

    width = len(bundle.manifest.features)
    reference = reference or LightGBMPredictor(bundle.model_text, width)
    try:
        explainer = NativeExplainer(compile_explainer(options), bundle.model_text, width)
        rows = np.asarray(bundle.golden.rows, dtype=np.float64)
        raw = reference.raw_scores(rows)
        totals = np.array([sum(explainer.contributions_with_bias(r)) for r in rows])
        worst = float(np.max(np.abs(totals - raw)))
        if not worst <= CONTRIB_TOLERANCE * max(1.0, float(np.max(np.abs(raw)))):
            raise CompileError(f"explainer contributions miss the raw score by {worst:.3g}")
    except (CompileError, ValueError) as exc:
        log.warning(
            "explainer.fallback_to_lightgbm",
            reason=str(exc),
            impact="REVIEW/DECLINE answers take ~0.7 ms longer for their reason codes",
        )
        return reference
    return explainer


def compile_for_serving(bundle: Bundle, options: CompileOptions) -> Iterator[str]:
    """`fraudscreen compile`: build (or take from the cache) and parity-check every model the
    bundle serves, one line each as it is done. A stacked bundle serves two: the base (also
    the explainer) and the correction."""
    parts = (
        [("", bundle)]
        if bundle.base is None
        else [("base ", bundle.base), ("correction ", bundle.correction)]
    )
    for label, part in parts:
        reference = LightGBMPredictor(part.model_text, len(part.manifest.features))
        compiled = compile_bundle(part, options, reference)
        if part is parts[0][1]:
            explainer = load_explainer(part, options, reference)
            yield f"reason codes: {explainer.kind} explainer"
        source = "cache" if compiled.from_cache else "fresh build"
        yield (
            f"{label}{part.model_version}: {compiled.library} ({source}, "
            f"{compiled.seconds:.1f} s); parity max |diff| = {compiled.max_abs_diff:.2e} on "
            f"{len(part.golden.rows)} golden rows"
        )
