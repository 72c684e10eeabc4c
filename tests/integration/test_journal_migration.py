"""A version-1 journal whose move to schema 2 runs out of disk: one clear error, file as it was.

In a child process, so the file-size limit that stands in for a full disk binds only there."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from fraudscreen.storage.journal import SCHEMA_VERSION, Journal
from tests.unit.storage.test_journal import query, settings
from tests.unit.storage.test_journal_key_index import version_1_file


def test_a_move_that_runs_out_of_disk_says_what_to_do_and_leaves_the_file_as_it_was(
    tmp_path: Path,
) -> None:
    """The move's pages reach the disk mostly at COMMIT: that failure is reported too."""
    path = settings(tmp_path).path
    version_1_file(path, days=6_000)
    limit = path.stat().st_size + 64 * 1024  # no file may grow past this: the WAL cannot
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        from pathlib import Path
        from fraudscreen.storage.journal import Journal, JournalOpenError, JournalSettings
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
        try:
            Journal(JournalSettings(path=Path({str(path)!r})))
        except JournalOpenError as exc:
            print(exc)
            sys.exit(3)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 3, done.stderr[-2000:]
    assert "could not move to schema version 2" in done.stdout
    assert "free disk" in done.stdout
    assert query(path, "PRAGMA user_version") == [(1,)]
    assert query(path, "SELECT COUNT(*) FROM transactions") == [(6_000,)]
    Journal(settings(tmp_path)).close()  # with room, the move goes through
    assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert query(path, "SELECT COUNT(*) FROM transactions") == [(6_000,)]
