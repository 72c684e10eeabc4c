"""Check a published release before the hub serves it to a single gateway.

Gateways verify every release themselves; the hub checks too, so that a mistake (an
unsigned bundle, a key the fleet does not trust, a file changed after signing) is refused
at publish time, where the analyst sees it, instead of by every gateway at once.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from fraudscreen.binschema import BinSchema
from fraudscreen.hub.errors import ReleaseRejectedError
from fraudscreen.model.bundle import MANIFEST_FILE, SIGNATURE_FILE, BundleError
from fraudscreen.model.signing import PublicKey, load_verified_bundle
from fraudscreen.rpc.status import FieldViolation, RequestInvalidError


@dataclass(frozen=True)
class VerifiedRelease:
    model_version: str
    bin_schema: BinSchema | None  # what gateways running it aggregate with


def verify_release(
    model_version: str, files: Mapping[str, bytes], trusted: Sequence[PublicKey]
) -> VerifiedRelease:
    """What the verified bundle tells the hub. ReleaseRejectedError if a trusted key did
    not sign exactly these files; RequestInvalidError if model_version disagrees with the
    manifest."""
    if not trusted:
        raise ReleaseRejectedError(
            "this hub has no trusted analyst public keys, so it refuses every release; "
            "start it with --trusted-key PUB.pem"
        )
    if SIGNATURE_FILE not in files:
        raise ReleaseRejectedError(
            f"the release has no {SIGNATURE_FILE}: sign the bundle with `fraudscreen sign` "
            "before publishing it"
        )
    with tempfile.TemporaryDirectory(prefix="fraudscreen-release-") as tmp:
        directory = Path(tmp)
        for name, content in files.items():
            fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
        try:
            bundle = load_verified_bundle(directory, trusted)
        except (BundleError, OSError) as exc:
            message = str(exc).replace(str(directory), f"release {model_version}")
            raise ReleaseRejectedError(message) from exc
    unsigned = sorted(set(files) - set(bundle.manifest.files) - {MANIFEST_FILE, SIGNATURE_FILE})
    if unsigned:
        raise ReleaseRejectedError(
            f"{', '.join(unsigned)} not listed in {MANIFEST_FILE}, so the signature does not "
            "cover it; publish only the bundle's own files"
        )
    if bundle.model_version != model_version:
        raise RequestInvalidError(
            [
                FieldViolation(
                    "release.model_version",
                    f"is {model_version!r} but the signed manifest says "
                    f"{bundle.model_version!r}; send the manifest's model_version",
                )
            ]
        )
    return VerifiedRelease(bundle.model_version, bundle.bin_schema)
