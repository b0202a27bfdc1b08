"""The real `edgeft serve` process for the server tests: started on a free port of 127.0.0.1, stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx


class Server:
    """`python -m edgeft serve BUNDLE --port 0 ARGS` in a subprocess; ``url`` once it answers /healthz."""

    def __init__(self, bundle: Path, *args: str, env: dict | None = None):
        self.started = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-m", "edgeft", "serve", str(bundle), "--port", "0", *map(str, args)],
                                     stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
        self.lines = []
        while True:  # the warning (if any), then "serving … on http://127.0.0.1:PORT: …"
            line = self.proc.stderr.readline()
            self.lines.append(line)
            if " on http://" in line or not line:
                break
        assert line, "".join(self.lines) + self.proc.stderr.read()
        self.url = line.split(" on ")[1].split(": ")[0]
        self.client = httpx.Client(base_url=self.url, timeout=30)
        deadline = time.perf_counter() + 30
        while self.client.get("/healthz").status_code != 200:
            assert time.perf_counter() < deadline
        self.cold_start = time.perf_counter() - self.started

    def stop(self) -> tuple[int, str]:
        """SIGTERM; (exit code, everything it wrote to stderr)."""
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(30)
        return rc, "".join(self.lines) + self.proc.stderr.read()
