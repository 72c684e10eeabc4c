"""Building and binding a sync gRPC server the same way for the gateway and the hub:
health and reflection beside the service, message limits, TLS or mutual TLS."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from fraudscreen.config import TLSConfig, parse_host_port
from fraudscreen.rpc.port_check import ensure_can_listen


def server_credentials(tls: TLSConfig) -> grpc.ServerCredentials | None:
    if tls.cert_file is None or tls.key_file is None:
        return None
    client_ca = tls.client_ca_file.read_bytes() if tls.client_ca_file else None
    return grpc.ssl_server_credentials(
        [(tls.key_file.read_bytes(), tls.cert_file.read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def server_options(max_message_bytes: int, *, keepalive: bool) -> list[tuple[str, Any]]:
    """Message limits both ways, no port sharing; `keepalive` lets terminals keep idle
    connections open with pings (the gateway), which the hub does not need."""
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    if keepalive:
        options += [
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ]
    return options


def build_server(
    *,
    handlers: grpc.GenericRpcHandler[Any, Any],
    health_servicer: health.HealthServicer,
    service_name: str,
    max_workers: int,
    thread_prefix: str,
    options: Sequence[tuple[str, Any]],
    max_concurrent_rpcs: int | None = None,
    interceptors: Sequence[grpc.ServerInterceptor[Any, Any]] = (),
) -> grpc.Server:
    """`max_concurrent_rpcs` is gRPC's own global limit; the gateway leaves it unset and
    admits calls per kind with an interceptor instead (gateway/admission.py)."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=thread_prefix),
        maximum_concurrent_rpcs=max_concurrent_rpcs,
        options=list(options),
        interceptors=list(interceptors),
    )
    server.add_generic_rpc_handlers((handlers,))
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (service_name, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    return server


def bind(
    server: grpc.Server, listen: str, tls: TLSConfig, *, setting: str = "server.listen"
) -> tuple[str, int]:
    """Add the listening port (TLS when configured); returns (address, bound port).
    `setting` names where `listen` came from, for the error when it is taken."""
    host, port = parse_host_port(listen)
    ensure_can_listen(host, port, setting)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    credentials = server_credentials(tls)
    bound = (
        server.add_secure_port(address, credentials)
        if credentials is not None
        else server.add_insecure_port(address)
    )
    if bound == 0:
        raise OSError(f"{setting} = {listen}: gRPC cannot listen on {address}")
    return address, bound
