"""A private, throw-away PostgreSQL cluster (initdb into a temporary directory, its own free
port), for the tests that stop and start PostgreSQL: the shared server on 5432 is never
touched. Needs the PostgreSQL server binaries (initdb, pg_ctl) on PATH or in /usr/local/bin.
Run as root, the cluster is created and run as the ``postgres`` user (initdb refuses root)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from hub.broker.embedded import free_port


def _binary(name: str) -> str | None:
    found = shutil.which(name) or shutil.which(name, path="/usr/local/bin")
    return found


def available() -> str | None:
    """None when a private cluster can be made, else the reason it cannot."""
    for b in ("initdb", "pg_ctl"):
        if _binary(b) is None:
            return f"{b} not found"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser"
    return None


class PrivateCluster:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="eai-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.log = self.dir / "server.log"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        cmd = list(args)
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, timeout=120)

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def create(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        initdb = _binary("initdb")
        assert initdb is not None
        self._run(initdb, "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")
        self.start()

    def start(self) -> float:
        """Start; seconds until it accepts connections."""
        t0 = time.monotonic()
        pg_ctl = _binary("pg_ctl")
        assert pg_ctl is not None
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c max_connections=200"
        self._run(pg_ctl, "-D", str(self.data), "-o", opts, "-l", str(self.log), "-w", "start")
        return time.monotonic() - t0

    def stop(self, mode: str = "fast") -> None:
        """``immediate`` is a crash: no checkpoint, connections cut, recovery on start."""
        pg_ctl = _binary("pg_ctl")
        assert pg_ctl is not None
        self._run(pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
