"""The central hub: stores the fleet's DP aggregate batches and serves signed model releases.

storage.py    HubStore interface, its records, row helpers both backends share (no gRPC)
sqlite_store.py SQLiteHubStore: the interface on one SQLite file (the embedded default)
postgres.py   PostgresHubStore: the same interface on PostgreSQL, for several hub processes
database.py   which store a --db names (file path or postgresql:// URL)
migrations.py versioned schema of both backends (schema_migrations)
fleet.py      what gateways report about themselves (GatewayState), stale sites
fleet_view.py one row per site for `hub status` and the report
metrics.py    Prometheus: this process's pushes/refusals, the fleet's versions and stale sites
drift.py      PSI of the fleet's binned features per period against the training reference
report.py     `hub report`: the static fleet.html
tokens.py     token files: hashes of per-site and publisher bearer tokens
auth.py       who is calling: bearer token, or mTLS certificate name
schemas.py    the bin schemas the hub accepts batches for
validation.py PushBatch/PublishRelease requests -> domain values, every bad field named
releases.py   signature check of a published release
service.py    the fraudscreen.v1.Sync servicer (thin)
server.py     HubServer: gRPC bootstrap, health, reflection, TLS, drain on SIGTERM
export.py     the summed table as CSV/Parquet for analysts
commands.py   what `fraudscreen hub ...` does besides serving (the CLI parses in cli/hub.py)
publish.py    the analyst's PublishRelease call (`fraudscreen publish`)
"""
