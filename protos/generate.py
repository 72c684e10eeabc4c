"""Generate the Python gRPC stubs under fraudscreen/v1 from protos/ (grpcio-tools).

    python protos/generate.py          write the stubs
    python protos/generate.py --check  exit 1 if the committed stubs are stale

The stubs are committed so a plain `pip install` needs no code generator; the --check mode
runs in the test suite, so a .proto edit without regeneration fails CI.
"""

from __future__ import annotations

import argparse
import importlib.resources
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
PACKAGE_DIR = ROOT / "fraudscreen" / "v1"


def _plugin(name: str) -> str:
    """mypy-protobuf's protoc plugins, installed next to this Python."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise SystemExit(f"{name} not found; install the dev extras: pip install -e '.[dev]'")
    return str(path)


def _generate(out_dir: Path) -> list[Path]:
    from grpc_tools import protoc

    google_protos = Path(str(importlib.resources.files("grpc_tools") / "_proto"))
    import google.rpc.status_pb2

    common_protos = Path(google.rpc.status_pb2.__file__).resolve().parent.parent.parent
    sources = sorted(
        str(p.relative_to(PROTOS)) for p in (PROTOS / "fraudscreen" / "v1").glob("*.proto")
    )
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{common_protos}",
        f"-I{google_protos}",
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the messages above")
    return sorted((out_dir / "fraudscreen" / "v1").glob("*_pb2*.py*"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        generated = _generate(Path(scratch))
        stale = []
        for path in generated:
            target = PACKAGE_DIR / path.name
            if args.check:
                if not target.exists() or target.read_bytes() != path.read_bytes():
                    stale.append(target.name)
            else:
                target.write_bytes(path.read_bytes())
        if args.check:
            expected = {p.name for p in generated}
            stale += [p.name for p in PACKAGE_DIR.glob("*_pb2*.py*") if p.name not in expected]
            if stale:
                print(
                    f"stale generated stubs: {', '.join(sorted(stale))}; run "
                    "`python protos/generate.py` and commit the result",
                    file=sys.stderr,
                )
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
