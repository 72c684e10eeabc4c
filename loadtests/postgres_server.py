"""A real, throwaway PostgreSQL server for the tests: Debian's `postgresql` binaries
(initdb, postgres) on a unix socket in a temporary directory, one server per test session
and one fresh database per test. Never skipped: if the binaries are missing or the server
does not start, the test fails saying what to install (`.ci/run` installs it as root).

PostgreSQL refuses to run as root; under root (CI, containers) the server runs as the
`postgres` user the Debian package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, postgres) not found: install Debian's `postgresql` "
    "package (`apt-get update && apt-get install -y postgresql`; `bash .ci/run` does this "
    "when it runs as root)"
)


def find_bindir() -> Path | None:
    """The newest PostgreSQL bin directory on this machine."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
    )
    for directory in reversed(candidates):
        if (Path(directory) / "initdb").exists() and (Path(directory) / "postgres").exists():
            return Path(directory)
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


class PostgresServer:
    """initdb + postgres in a temp dir; `database()` makes a fresh database, returns its DSN."""

    def __init__(self) -> None:
        bindir = find_bindir()
        if bindir is None:
            raise RuntimeError(INSTALL_HINT)
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="fraudscreen-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self._as_user: dict[str, int] = {}
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise RuntimeError(
                    f"running as root and no `postgres` user: {INSTALL_HINT}"
                ) from exc
            self._as_user = {"user": account.pw_uid, "group": account.pw_gid}
            os.chown(self.root, account.pw_uid, account.pw_gid)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def socket_dir(self) -> str:
        return str(self.root)

    def admin_dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql:///{dbname}?host={self.root}&user=postgres"

    def start(self, timeout: float = 60.0) -> None:
        initdb = subprocess.run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            check=False,
            **self._as_user,  # type: ignore[call-overload]
        )
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed: {initdb.stderr.strip() or initdb.stdout.strip()}")
        with self.log.open("wb") as log:
            if self._as_user:
                os.chown(self.log, self._as_user["user"], self._as_user["group"])
            self._process = subprocess.Popen(
                [
                    str(self.bindir / "postgres"),
                    "-D",
                    str(self.data),
                    "-k",
                    str(self.root),
                    "-h",
                    "",  # no TCP listener: the unix socket only
                    "-c",
                    "fsync=off",  # a test server: durability is the production server's job
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=300",
                    "-c",
                    "shared_buffers=32MB",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self._as_user,  # type: ignore[call-overload]
            )
        deadline = time.monotonic() + timeout
        last_error = ""
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"postgres exited at start: {self.log.read_text()[-2000:]}")
            try:
                with psycopg.connect(self.admin_dsn(), connect_timeout=2):
                    return
            except psycopg.OperationalError as exc:
                last_error = str(exc)
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"postgres did not accept connections in {timeout:.0f} s: {last_error}")

    def database(self) -> str:
        """A new empty database; its DSN."""
        name = "t_" + uuid.uuid4().hex[:16]
        with psycopg.connect(self.admin_dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.admin_dsn(name)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def started_server(fail: Callable[[str], object]) -> PostgresServer:
    """Start one, or call `fail` (pytest.fail) with what went wrong and what to install."""
    try:
        server = PostgresServer()
        server.start()
    except RuntimeError as exc:
        fail(f"{exc}. The PostgreSQL tests never skip; {INSTALL_HINT}")
        raise
    return server
