"""``gpumlp train`` in a subprocess whose output a test reads line by line as it comes, to act
at a point of the run (an epoch's line) without sleeping."""

from __future__ import annotations

import queue
import re
import subprocess
import threading
import time

from helpers.cli import PATIENCE, reap, start_gpumlp


class Trainer:
    """``gpumlp train ARGV`` in a subprocess, its stdout and stderr read line by line as they
    come (by threads, so a wait never blocks past its timeout)."""

    def __init__(self, *argv, preexec_fn=None) -> None:
        self.proc = start_gpumlp(
            "train",
            *argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=preexec_fn,
        )
        self.lines: dict[str, list[str]] = {"out": [], "err": []}
        self._new: queue.Queue[tuple[str, str]] = queue.Queue()
        self._readers = [
            threading.Thread(target=self._read, args=(name, stream), daemon=True)
            for name, stream in (("out", self.proc.stdout), ("err", self.proc.stderr))
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, name: str, stream) -> None:
        for line in stream:
            self.lines[name].append(line)
            self._new.put((name, line))

    def wait_for(self, pattern: str, *, stream: str = "out", timeout: float = PATIENCE) -> str:
        """The first line of ``stream`` matching ``pattern``; fails when none comes in time."""
        seen = list(self.lines[stream])
        deadline = time.monotonic() + timeout
        while True:
            for line in seen:
                if re.match(pattern, line):
                    return line
            assert self.proc.poll() is None or not self._new.empty(), (
                f"the run ended (exit {self.proc.returncode}) before printing {pattern!r}: "
                + "".join(self.lines["err"])[-2000:]
            )
            left = deadline - time.monotonic()
            assert left > 0, f"no line {pattern!r} after {timeout} s"
            try:
                name, line = self._new.get(timeout=min(left, 0.5))
            except queue.Empty:
                seen = []
                continue
            seen = [line] if name == stream else []

    def finish(self, timeout: float = PATIENCE) -> tuple[int, str, str]:
        """Wait for the end: (exit code, stdout, stderr)."""
        code = self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=10)
        return code, "".join(self.lines["out"]), "".join(self.lines["err"])

    def kill(self) -> None:
        reap(self.proc)
