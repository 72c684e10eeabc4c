"""Who may call the hub: bearer tokens per site and for publishers (hashed at rest, never
logged), TLS, and mTLS naming the site by its certificate."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from structlog.testing import capture_logs

from fraudscreen.config import TLSConfig
from fraudscreen.hub.tokens import add_token, hash_token
from fraudscreen.v1 import sync_pb2 as pb
from fraudscreen.v1 import sync_pb2_grpc as pb_grpc
from tests.support.hub_support import Hub, Keys, bearer, make_batch, refused, running_hub
from tests.support.tls_material import TLSFiles, secure_channel

# -- authentication and authorization -----------------------------------------------------


@pytest.mark.parametrize(
    "metadata",
    [
        (),
        (("authorization", "Bearer not-a-token"),),
        (("authorization", "Basic c2hvcDpwdw=="),),
        (("authorization", "Bearer"),),
    ],
    ids=["none", "unknown", "not-bearer", "empty"],
)
def test_missing_or_unknown_token_is_unauthenticated(
    hub: Hub, metadata: tuple[tuple[str, str], ...]
) -> None:
    with hub.stub() as stub:
        for call in (
            lambda: stub.PushBatch(pb.PushBatchRequest(batch=make_batch()), metadata=metadata),
            lambda: stub.FetchRelease(pb.FetchReleaseRequest(), metadata=metadata),
            lambda: stub.PublishRelease(pb.PublishReleaseRequest(), metadata=metadata),
        ):
            code, message, _ = refused(call)
            assert code == grpc.StatusCode.UNAUTHENTICATED
            assert "Bearer" in message or "token" in message
    assert hub.rows("SELECT COUNT(*) FROM batches") == [(0,)]


def test_a_site_cannot_push_another_sites_batch(hub: Hub) -> None:
    code, message, _ = refused(lambda: hub.push(make_batch(site="shop-b"), site="shop-a"))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "'shop-b'" in message and "'shop-a'" in message
    assert hub.rows("SELECT COUNT(*) FROM batches") == [(0,)]


def test_publisher_token_cannot_push_and_site_token_cannot_publish(hub: Hub) -> None:
    with hub.stub() as stub:
        code, message, _ = refused(
            lambda: stub.PushBatch(
                pb.PushBatchRequest(batch=make_batch()), metadata=bearer(hub.publisher)
            )
        )
        assert code == grpc.StatusCode.PERMISSION_DENIED and "publisher" in message
        code, message, _ = refused(
            lambda: stub.PublishRelease(
                pb.PublishReleaseRequest(), metadata=bearer(hub.tokens["shop-a"])
            )
        )
        assert code == grpc.StatusCode.PERMISSION_DENIED and "add-publisher" in message


def test_tokens_are_never_logged(hub: Hub) -> None:
    with capture_logs() as logs:
        hub.push(make_batch())
        with hub.stub() as stub:
            refused(
                lambda: stub.PushBatch(
                    pb.PushBatchRequest(batch=make_batch()),
                    metadata=bearer("a-secret-that-is-not-known"),
                )
            )
    text = json.dumps(logs, default=str)
    assert "sync.batch_stored" in text and "sync.refused" in text
    for token in (*hub.tokens.values(), hub.publisher, "a-secret-that-is-not-known"):
        assert token not in text


def test_token_file_holds_hashes_only_and_a_new_site_works_without_restart(hub: Hub) -> None:
    path = hub.directory / "sites.tokens"
    text = path.read_text()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    for site, token in hub.tokens.items():
        assert token not in text
        assert f"{site} {hash_token(token)}" in text
    new_token = add_token(path, "shop-c")
    hub.tokens["shop-c"] = new_token
    assert hub.push(make_batch(site="shop-c"), site="shop-c").stored
    with pytest.raises(ValueError, match="--rotate"):
        add_token(path, "shop-c")
    rotated = add_token(path, "shop-c", rotate=True)
    code, _, _ = refused(lambda: hub.push(make_batch(site="shop-c", period="2018-04-02"), "shop-c"))
    assert code == grpc.StatusCode.UNAUTHENTICATED  # the old token stopped working
    hub.tokens["shop-c"] = rotated
    assert hub.push(make_batch(site="shop-c", period="2018-04-02"), site="shop-c").stored


# -- TLS ----------------------------------------------------------------------------------


def test_tls(tmp_path: Path, keys: Keys, tls: TLSFiles) -> None:
    settings = {"tls": TLSConfig(cert_file=tls.server_cert, key_file=tls.server_key)}
    with running_hub(tmp_path / "hub", keys, **settings) as hub:
        with secure_channel(hub.server.port, tls.ca_cert) as channel:
            reply = pb_grpc.SyncStub(channel).PushBatch(
                pb.PushBatchRequest(batch=make_batch()),
                metadata=bearer(hub.tokens["shop-a"]),
                timeout=5,
            )
            assert reply.stored
        with grpc.insecure_channel(f"127.0.0.1:{hub.server.port}") as plain:
            code, _, _ = refused(
                lambda: pb_grpc.SyncStub(plain).PushBatch(
                    pb.PushBatchRequest(batch=make_batch()),
                    metadata=bearer(hub.tokens["shop-a"]),
                    timeout=3,
                )
            )
            assert code == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_names_the_site_by_certificate_and_tokens_still_work(
    tmp_path: Path, keys: Keys, tls: TLSFiles
) -> None:
    mutual = TLSConfig(
        cert_file=tls.server_cert, key_file=tls.server_key, client_ca_file=tls.ca_cert
    )
    with running_hub(tmp_path / "hub", keys, tls=mutual) as hub:
        port = hub.server.port
        with secure_channel(port, tls.ca_cert, tls.client_cert, tls.client_key) as channel:
            stub = pb_grpc.SyncStub(channel)
            # the client certificate's CN is "terminal-1": that is the site, no token needed
            assert stub.PushBatch(
                pb.PushBatchRequest(batch=make_batch("terminal-1")), timeout=5
            ).stored
            code, _, _ = refused(
                lambda: stub.PushBatch(pb.PushBatchRequest(batch=make_batch("shop-a")), timeout=5)
            )
            assert code == grpc.StatusCode.PERMISSION_DENIED
            assert stub.PushBatch(  # a token, when sent, names the site
                pb.PushBatchRequest(batch=make_batch("shop-a")),
                metadata=bearer(hub.tokens["shop-a"]),
                timeout=5,
            ).stored
        for cert, key in ((None, None), (tls.other_client_cert, tls.other_client_key)):
            with secure_channel(port, tls.ca_cert, cert, key) as channel:
                code, _, _ = refused(
                    lambda: pb_grpc.SyncStub(channel).PushBatch(
                        pb.PushBatchRequest(batch=make_batch()),
                        metadata=bearer(hub.tokens["shop-a"]),
                        timeout=3,
                    )
                )
                assert code == grpc.StatusCode.UNAVAILABLE
