"""On-site SQLite storage behind the domain: the journal, the privacy outbox and ledger."""
