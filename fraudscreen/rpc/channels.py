"""Client channels to a gateway or hub: plaintext on loopback, TLS or mutual TLS otherwise."""

from __future__ import annotations

from pathlib import Path

import grpc


def client_channel(
    target: str,
    *,
    ca_file: Path | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    options: tuple[tuple[str, int], ...] = (),
) -> grpc.Channel:
    """`ca_file` turns TLS on; `cert_file` + `key_file` add a client certificate (mTLS)."""
    if ca_file is None:
        return grpc.insecure_channel(target, options=options)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(ca_file).read_bytes(),
        private_key=Path(key_file).read_bytes() if key_file else None,
        certificate_chain=Path(cert_file).read_bytes() if cert_file else None,
    )
    return grpc.secure_channel(target, credentials, options=options)
