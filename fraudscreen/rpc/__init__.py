"""gRPC plumbing shared by the gateway and the hub: server build/bind with TLS, client
channels, lifecycle and signals, runtime settings, exception -> status mapping."""
