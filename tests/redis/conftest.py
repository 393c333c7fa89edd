"""Fixtures: persimmon-redis servers started as subprocesses on free ports, and a real
redis-server for differential checks.  Only processes started here are stopped, by pid."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest
import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port}")


class ServerProc:
    """A persimmon-redis subprocess."""

    def __init__(self, mode: str = "persimmon", pool_dir: str | None = None,
                 extra: tuple = (), env: dict | None = None, pass_dir: bool = True) -> None:
        self.port = free_port()
        self.env = {**os.environ, **env} if env else None  # (added to the environment)
        self.dir = pool_dir or f"/dev/shm/persimmon-redis-test-{uuid.uuid4().hex}"
        self.mode = mode
        self.extra = extra
        self.proc: subprocess.Popen | None = None
        self.log_path = f"{self.dir}.log"
        # (pass_dir False: no --dir, the server picks its default, which must be self.dir)
        self.dir_args = ("--dir", self.dir) if pass_dir else ()

    def start(self) -> ServerProc:
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "persimmon_redis", "--port", str(self.port),
             "--persistence", self.mode, *self.dir_args, *self.extra],
            stdout=self.logf, stderr=subprocess.STDOUT, env=self.env,
        )
        wait_port(self.port, self.proc)
        return self

    def client(self, **kw) -> redis.Redis:
        return redis.Redis(port=self.port, **kw)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)
        self.logf.close()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        try:
            os.unlink(self.log_path)
        except FileNotFoundError:
            pass


@pytest.fixture(scope="session", params=["persimmon", "none"])
def server(request):
    s = ServerProc(request.param).start()
    yield s
    s.cleanup()


@pytest.fixture
def r(server):
    c = server.client()
    c.flushall()
    yield c
    c.close()


@pytest.fixture(scope="session")
def real_redis(tmp_path_factory):
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed (scripts/test.sh installs it)")
    port = free_port()
    # (--dir: a SAVE a test sends writes its dump.rdb there, not in the current directory)
    p = subprocess.Popen([exe, "--port", str(port), "--save", "", "--appendonly", "no",
                          "--bind", "127.0.0.1",
                          "--dir", str(tmp_path_factory.mktemp("real-redis"))],
                         stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    wait_port(port, p)
    yield redis.Redis(port=port)
    p.terminate()
    p.wait(10)
