"""devtools.process_tree finds a process's descendants and never mistakes a reused PID."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from devtools.process_tree import Started, command_line, descendants, still_running


def test_descendants_and_survivors() -> None:
    shell = subprocess.Popen(["sh", "-c", "sleep 30 & sleep 30 & wait"])
    try:
        deadline = time.monotonic() + 5
        while len(found := descendants(shell.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(found) == 2
        assert all(command_line(p.pid) == "sleep 30" for p in found)
        assert all(still_running(p) for p in found)
        assert not still_running(Started(found[0].pid, found[0].start + 1))  # another process
        assert descendants(os.getpid())  # this test's shell is below the test
    finally:
        for process in descendants(shell.pid):
            os.kill(process.pid, signal.SIGKILL)
        shell.wait(5)
    assert not any(still_running(p) for p in found)
