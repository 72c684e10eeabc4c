"""EXAMPLE_TOML: the commented configuration file with every setting at its default.

It is the operator's reference for the settings; tests/unit/config/test_defaults.py checks that it
loads to exactly the defaults and names every setting once, so it cannot drift.
"""

EXAMPLE_TOML = """\
# fraudscreen gateway configuration, every setting at its default: keep only what you change.
# The gateway reads the file named by FRAUDSCREEN_CONFIG=PATH.
# Any setting can also come from an environment variable FRAUDSCREEN_<SECTION>_<SETTING>,
# which wins over this file: FRAUDSCREEN_SERVER_LISTEN, FRAUDSCREEN_SERVER_TLS_CERT_FILE, ...
# Relative paths are resolved against the directory of this file. An empty string "" leaves
# an optional setting unset.

[site]
# Names this gateway in logs, metrics and the aggregates sent to the hub (A-Z a-z 0-9 . _ -).
id = "site-local"
# IANA time zone of the shop: time-of-day features use local time.
timezone = "UTC"
# ISO 4217 currencies terminals may send; other currencies are rejected.
currencies = ["EUR"]
# Secret HMAC key that turns card numbers into tokens. Keep it private and backed up:
# a new key makes every card look new to the model.
key_file = "var/site.key"

[server]
# gRPC address for terminals: host:port, IPv6 as "[::1]:50051", port 0 picks a free port.
# The default accepts connections from this machine only; to serve terminals use
# "0.0.0.0:50051" or "[::]:50051" together with [server.tls].
listen = "127.0.0.1:50051"
# Each kind of call has its own limit and its own threads (one per call admitted), so idle
# or slow callers of one kind cannot delay another; a call past its kind's limit is refused
# at once with RESOURCE_EXHAUSTED (README, "Reliability").
# Health and reflection calls at once (1..1024).
max_workers = 16
# Unary screening calls (Screen, ScreenBatch, ReportOutcome) at once (1..10000).
max_concurrent_rpcs = 256
# ScreenStream calls open at once (1..10000); keep it below the number of POS hosts' streams
# you expect plus a margin.
max_streams = 64
# Seconds a call may go without a request message (a quiet stream, a unary call whose request
# never arrives) before it is ended with UNAVAILABLE and the log names the peer (0.1..86400).
idle_timeout = 60.0
# Largest request or response message in bytes (1 KiB..64 MiB).
# A ScreenBatch is capped so its worst-case answer fits (500 at the default).
max_message_bytes = 524288
# On SIGTERM, seconds to let in-flight requests finish (0..600).
grace_seconds = 10.0
# Run the whole gateway process on one CPU: "auto" (the first allowed CPU, when there
# are two or more), "off", or a CPU number such as "1". Cross-core thread wake-ups cost
# more latency and throughput than the second core gave on a 2-core gateway (README).
pin_cpu = "auto"

[server.tls]
# Certificate chain and private key (PEM) to serve TLS; both or neither (plaintext).
cert_file = ""
key_file = ""
# CA (PEM) that signs terminal certificates: set it to require mutual TLS.
client_ca_file = ""

[metrics]
# Prometheus /metrics endpoint, host:port; "" disables it.
listen = "127.0.0.1:9464"

[metrics.tls]
# As [server.tls]; with client_ca_file the scraper must present a client certificate.
cert_file = ""
key_file = ""
client_ca_file = ""

[model]
# Model bundle directory (model.txt, manifest.json, manifest.sig). Default: the bundle
# shipped with fraudscreen (models/default).
# bundle = "/opt/fraudscreen/models/default"
# C compiler that builds the model into native code (command or path).
compiler = "gcc"
# Where compiled models are cached; "" means $FRAUDSCREEN_CACHE_DIR, else
# ~/.cache/fraudscreen/compiled.
cache_dir = ""
# "native": the compiled model (falls back to LightGBM, loudly, without a compiler);
# "lightgbm": LightGBM's own predictor, e.g. as the baseline in benchmarks.
predictor = "native"
# Public keys (PEM files) trusted to sign model releases; none disables updates.
trusted_keys = []
# Where verified releases are kept (and state.json: current, previous, rejected).
releases_dir = "var/releases"
# Live transactions a new release scores in shadow before it takes over (0: swap at once).
shadow_transactions = 0

[policy]
# Score thresholds overriding the model bundle's (0..1, review <= decline); unset: the bundle's.
# review_threshold = 0.5
# decline_threshold = 0.9
# Card tokens (never card numbers), one per line, always declined.
blocked_cards_file = ""
# Amount limits in minor units (cents for EUR); unset: no limit.
# Above decline_above_minor: DECLINE. Above review_above_minor: at least REVIEW.
# decline_above_minor = 500000
# review_above_minor = 100000
# With no model loaded the gateway answers by a stand-in policy: amounts above this
# (minor units) get at least REVIEW.
stand_in_review_above_minor = 20000

[journal]
# On-site SQLite journal of screened transactions (tokens only, no card numbers).
path = "var/journal.sqlite3"
# "normal": a power cut may lose the most recent commits (the journal stays consistent);
# "full": every commit is synced to disk before it counts (slower).
durability = "normal"
# Rows older than this are purged (38..3650; features look back 37 days).
retention_days = 60
# Group commit: at most this many rows per transaction (1..100000) ...
batch_max = 512
# ... written at least this often in milliseconds (0..1000).
flush_interval_ms = 5.0
# Most rows waiting to be written (1000..10000000).
max_queue = 200000

[screening]
# A retried Screen with the same terminal and transaction id within this window returns the
# first decision (hours, up to 720).
idempotency_window_hours = 24.0
# Transactions older than this are rejected (days).
max_transaction_age_days = 60.0
# Transactions timestamped further in the future than this are rejected (seconds, 0..86400).
max_clock_skew_seconds = 300.0

[privacy]
# What leaves the site, per period: DP counts over the model's bin schema (README, Privacy).
# Epsilon per card per day at this site; a period of N days is charged N x this.
epsilon_per_day = 1.0
# Only the "threshold" mechanism spends delta; "known_domain" is pure epsilon-DP.
delta = 1e-7
# Transactions per card per day that count (contribution bound).
max_contributions = 2
# Days per released table (one table, one noise draw, for the whole period).
period_days = 7
# Wait this long for chargebacks before releasing a period.
label_maturity_days = 14
# Lifetime epsilon; once spent, nothing more leaves this site.
epsilon_budget = 365.0
# How a period's table is released (both OpenDP discrete Laplace, same epsilon):
# "known_domain": every cell of the bin schema's domain (public: the schema alone fixes
#   it) gets noisy counts and none is selected away; pure epsilon-DP, delta 0.
# "threshold": only cells whose noisy total passes a DP threshold are released.
# known_domain is the default because fraud lives in sparse cells that never pass a
# per-site, per-day threshold. `fraudscreen evaluate --privacy` on the default simulation
# (5 sites, 28 daily periods, 2 transactions per card and period): average precision of
# the hub's model at epsilon 1 / 4 per period is 0.48 / 0.58 with known_domain and 0.01 /
# 0.02 with threshold (raw binned table without noise: 0.61; a random model: 0.007).
mechanism = "known_domain"

[sync]
# host:port of the hub; "" keeps everything on site. Several hub processes on one
# database: "hub-1:50061,hub-2:50061" (the gateway starts at a random one and moves to
# the next after a failed round).
hub = ""
# Per-site bearer token file (or FRAUDSCREEN_HUB_TOKEN); ca_file enables TLS,
# cert_file + key_file mutual TLS.
token_file = ""
ca_file = ""
cert_file = ""
key_file = ""
interval_seconds = 60.0
max_backoff_seconds = 900.0

[logging]
# "auto" (console lines when stderr is a terminal, JSON otherwise), "json" (one object
# per line) or "console" (for people). `fraudscreen --log-format` overrides it.
format = "auto"
# "debug", "info", "warning" or "error".
level = "info"
# Per-request log lines: "none" (metrics count every request), "non_approve" (REVIEW,
# DECLINE, outcomes and errors) or "all" (one line per screened transaction; ~10% CPU at
# full load). Card numbers never appear either way.
requests = "none"
"""
