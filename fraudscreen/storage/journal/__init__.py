"""The gateway's journal (journal.py says how it works)."""
