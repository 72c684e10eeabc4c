"""The analyst's side of PublishRelease: a signed bundle read from disk, sent to the hub in
one call with the publisher's bearer token. The hub verifies the signature; this refuses
only what would not even load."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from fraudscreen.model.bundle import load_bundle
from fraudscreen.model.releases import RELEASE_FILES
from fraudscreen.rpc.channels import client_channel
from fraudscreen.rpc.readiness import FAST_RECONNECT, wait_until_serving
from fraudscreen.v1 import sync_pb2, sync_pb2_grpc


class PublishRefusedError(RuntimeError):
    """The hub answered with an error status (bad token, unsigned, unknown key ...)."""


@dataclass(frozen=True)
class Published:
    model_version: str
    sites: int  # how many sites the hub offers it to


def read_token(path: Path, flag: str) -> str:
    """The publisher token saved from `fraudscreen hub add-publisher`; errors name `flag`."""
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        raise ValueError(
            f"{flag} {path}: no such file (`fraudscreen hub add-publisher` prints the token; "
            "save it to a file)"
        ) from None
    except OSError as exc:
        raise ValueError(f"{flag} {path}: cannot read it ({exc.strerror})") from None
    if not token:
        raise ValueError(f"{flag} {path}: the file is empty")
    return token


def publish_release(
    bundle_dir: Path,
    hub: str,
    *,
    token_file: Path,
    sites: Sequence[str],
    ca_file: Path | None,
    wait_seconds: float,
) -> Published:
    """Waits for the hub to serve (up to `wait_seconds`); PublishRefusedError on a refusal."""
    bundle = load_bundle(bundle_dir)  # refuse to publish something that does not even load
    files = [
        sync_pb2.ReleaseFile(name=name, content=(bundle_dir / name).read_bytes())
        for name in sorted(RELEASE_FILES)
        if (bundle_dir / name).is_file()
    ]
    token = read_token(token_file, "--token-file")
    channel = client_channel(hub, ca_file=ca_file, options=FAST_RECONNECT)
    with channel:
        wait_until_serving(
            channel,
            hub,
            service="",
            wait_seconds=wait_seconds,
            what="hub",
            hint="check --hub (and --ca-file for TLS), or wait longer with --wait",
        )
        try:
            reply = sync_pb2_grpc.SyncStub(channel).PublishRelease(
                sync_pb2.PublishReleaseRequest(
                    release=sync_pb2.ModelRelease(model_version=bundle.model_version, files=files),
                    sites=list(sites),
                ),
                timeout=60,
                metadata=(("authorization", f"Bearer {token}"),),
            )
        except grpc.RpcError as exc:
            raise PublishRefusedError(
                f"publish refused: {exc.code().name}: {exc.details()}"
            ) from None
    return Published(model_version=reply.model_version, sites=reply.sites)
