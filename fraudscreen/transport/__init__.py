"""gRPC transport: server bootstrap, servicers, validation, TLS, health and metrics."""
