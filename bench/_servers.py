"""Local servers for the tests and benchmarks that are about them: `mlflow server`/`mlflow ui`
and PostgreSQL (the database production MLflow runs on), each on 127.0.0.1 in its own process
group so that it can be stopped, or killed as a lost machine would be, with everything it started.
tests/conftest.py re-exports these; benchmarks import them directly."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


class ServerDidNotStart(RuntimeError):
    """A server exited or did not answer in time; the message ends with its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for the servers tests start)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mlflow(command: str, backend_store_uri: str, port: int, log, *options: str):
    """`mlflow ui` or `mlflow server` on 127.0.0.1:port, returned once it answers /health."""
    with open(log, "a") as out:  # the server keeps its own copy of the file
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "mlflow"), command, "--backend-store-uri",
             backend_store_uri, "--host", "127.0.0.1", "--port", str(port), *options],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return server
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                stop_process_group(server, graceful=False)
                raise ServerDidNotStart(f"mlflow {command} did not come up:\n"
                                        f"{Path(log).read_text()[-3000:]}") from None
            time.sleep(0.5)


def stop_process_group(process, timeout: float = 30, graceful: bool = True) -> None:
    """SIGTERM (graceful) or SIGKILL to a process started with start_new_session and its
    children; SIGKILL if SIGTERM has not stopped them within `timeout`."""
    try:
        os.killpg(process.pid, signal.SIGTERM if graceful else signal.SIGKILL)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass
    # The leader has exited, but a child of the group may still drain (an MLflow server's
    # uvicorn waits on open connections): the group goes too, never outliving the test.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def postgres_bin() -> Path | None:
    """The folder of PostgreSQL's server programs (initdb, postgres): Debian keeps them out of
    PATH under /usr/lib/postgresql/<version>/bin; elsewhere they are on PATH. None: not
    installed."""
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                    key=lambda p: (int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                                   else 0))
    found = debian[-1] if debian else (Path(shutil.which("postgres")) if shutil.which("postgres")
                                       else None)
    return found.parent if found else None


class Postgres:
    """A throwaway PostgreSQL server on 127.0.0.1:port with one database, `mlflow`, that trusts
    local connections. PostgreSQL refuses to run as root: as root, it runs as the `postgres` user
    the Debian package creates, in a folder of its own under the system's temp dir (pytest's
    folders are root's alone)."""

    def __init__(self, port: int, log):
        bin_dir = postgres_bin()
        if bin_dir is None:
            raise ServerDidNotStart("PostgreSQL is not installed (Debian: apt install postgresql)")
        self.port, self.log = port, Path(log)
        self.uri = f"postgresql://postgres@127.0.0.1:{port}/mlflow"
        self.folder = Path(tempfile.mkdtemp(prefix="raysweep-postgres-"))
        as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if as_user:
            shutil.chown(self.folder, "postgres", "postgres")
        data = self.folder / "data"
        with open(self.log, "a") as out:
            subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
                            "-A", "trust", "-E", "UTF8"], stdout=out, stderr=subprocess.STDOUT,
                           check=True)
            self.process = subprocess.Popen(
                [*as_user, str(bin_dir / "postgres"), "-D", str(data), "-p", str(port),
                 "-k", str(self.folder), "-c", "listen_addresses=127.0.0.1"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self._create_database()

    def _create_database(self) -> None:
        import psycopg

        deadline = time.monotonic() + 60
        while True:
            try:  # autocommit: CREATE DATABASE cannot run in a transaction
                connection = psycopg.connect(host="127.0.0.1", port=self.port, user="postgres",
                                             dbname="postgres", connect_timeout=2, autocommit=True)
                break
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise ServerDidNotStart(f"PostgreSQL did not come up:\n"
                                            f"{self.log.read_text()[-3000:]}") from None
                time.sleep(0.3)
        with connection:
            connection.execute("CREATE DATABASE mlflow")

    def query(self, sql: str, *args) -> list[tuple]:
        """Rows of `sql` in the mlflow database (for tests that look behind MLflow's API)."""
        import psycopg

        with psycopg.connect(self.uri) as connection:
            return connection.execute(sql, args).fetchall()

    def stop(self) -> None:
        stop_process_group(self.process)
        shutil.rmtree(self.folder, ignore_errors=True)
