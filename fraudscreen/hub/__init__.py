"""The central hub: stores the fleet's DP aggregate batches and serves signed model releases.

storage.py    HubStore interface and its SQLite implementation (no gRPC)
tokens.py     token files: hashes of per-site and publisher bearer tokens
auth.py       who is calling: bearer token, or mTLS certificate name
schemas.py    the bin schemas the hub accepts batches for
validation.py PushBatch/PublishRelease requests -> domain values, every bad field named
releases.py   signature check of a published release
service.py    the fraudscreen.v1.Sync servicer (thin)
server.py     HubServer: gRPC bootstrap, health, reflection, TLS, drain on SIGTERM
export.py     the summed table as CSV/Parquet for analysts
commands.py   `fraudscreen hub ...` verbs
"""
