"""The processes under a process, read from /proc (Linux), each named by its PID *and* its start
time: a PID the kernel has reused for another process is never mistaken for a survivor."""

from __future__ import annotations

import os
from collections import defaultdict
from typing import NamedTuple


class Started(NamedTuple):
    """One process: its PID and its start time (clock ticks since boot)."""

    pid: int
    start: int


def _stat(pid: int | str) -> list[str] | None:
    """/proc/PID/stat's fields after the command name (state first), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def descendants(pid: int) -> list[Started]:
    """Every process below `pid` right now: its children, their children, and so on."""
    children: dict[int, list[Started]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        fields = _stat(entry) if entry.isdigit() else None
        if fields is not None:
            children[int(fields[1])].append(Started(int(entry), int(fields[19])))
    found: list[Started] = []
    queue = [pid]
    while queue:
        below = children.get(queue.pop(), [])
        found += below
        queue += [child.pid for child in below]
    return found


def still_running(process: Started) -> bool:
    """True when that very process (same PID, same start time) runs and is not a zombie."""
    fields = _stat(process.pid)
    return fields is not None and fields[0] != "Z" and int(fields[19]) == process.start


def command_line(pid: int) -> str:
    """The process's argv joined by spaces ("" once it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""
