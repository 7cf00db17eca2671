"""Round trips per request class, counted from an strace log, and their modelled time on EFS.

On EFS (NFS v4.1) every open, close, byte-range lock, fsync, unlink, link, rename, mkdir, directory
read and path lookup is a call to the server; data reads and writes of a small file mostly are not (the client
caches pages between open and close), so they are kept in a column of their own. The model below
prices each call with the latencies issue 13 states (AWS quotes about 1 ms for reads and 2.7 ms for
writes: https://docs.aws.amazon.com/efs/latest/ug/performance.html); only calls on paths at or
below the counters root, and on descriptors opened there, are counted - on Lambda everything else
(the bundle, /proc, the parents of the mount point) is local.

A traced worker marks the start of each request class by a failed `stat` of `MARK_DIR/<label>`;
everything between two marks belongs to the earlier one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MARK_DIR = "/nonexistent-bench-mark"

# Milliseconds per call: the model of issue 13.
MODEL_MS: dict[str, float] = {
    "open": 1.0,
    "close": 0.5,
    "lock": 0.5,
    "fsync": 2.0,
    "unlink": 1.0,
    "link": 1.0,
    "rename": 1.0,
    "mkdir": 1.0,
    "lookup miss": 0.5,
    "lookup hit": 0.25,
    # A directory read (getdents64 that returned entries; the empty one at the end is answered from
    # the READDIR reply's eof flag). The fleet tools walk the fan-out tree; NFS READDIR is a read.
    "readdir": 1.0,
}
ROUND_TRIPS = tuple(MODEL_MS)

STRACE_CALLS = (
    "open,openat,creat,close,fcntl,fsync,fdatasync,unlink,unlinkat,link,linkat,rename,renameat,renameat2,"
    "mkdir,mkdirat,stat,lstat,newfstatat,statx,access,faccessat,faccessat2,readlink,readlinkat,"
    "pread64,pwrite64,read,write,ftruncate,dup,dup2,dup3,getdents64"
)

_LINE = re.compile(r"^(?:\[pid\s+)?(\d+)\]?\s+(\w+)\((.*)\)\s+=\s+(-?\d+|\?)(?:\s+(\w+))?")
_LOCK_COMMANDS = ("F_SETLK", "F_SETLKW", "F_GETLK", "F_OFD_SETLK", "F_OFD_SETLKW", "F_OFD_GETLK")
_NAME_CALLS = {
    "unlink": "unlink",
    "unlinkat": "unlink",
    "link": "link",
    "linkat": "link",
    "rename": "rename",
    "renameat": "rename",
    "renameat2": "rename",
    "mkdir": "mkdir",
    "mkdirat": "mkdir",
}
_PATH_CALLS = {
    "stat": 0,
    "lstat": 0,
    "newfstatat": 1,
    "statx": 1,
    "access": 0,
    "faccessat": 1,
    "faccessat2": 1,
    "readlink": 0,
    "readlinkat": 1,
}


@dataclass
class Counts:
    """Round trips of one request class, by kind, and its data reads and writes."""

    calls: dict[str, int] = field(default_factory=dict)
    reads: int = 0
    writes: int = 0

    def add(self, kind: str) -> None:
        self.calls[kind] = self.calls.get(kind, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.calls.get(kind, 0) for kind in ROUND_TRIPS)

    @property
    def modelled_ms(self) -> float:
        return sum(MODEL_MS[kind] * self.calls.get(kind, 0) for kind in ROUND_TRIPS)

    def breakdown(self) -> str:
        return ", ".join(f"{self.calls[kind]} {kind}" for kind in ROUND_TRIPS if self.calls.get(kind))

    def as_dict(self) -> dict[str, object]:
        return {
            "round_trips": self.total,
            "modelled_efs_ms": self.modelled_ms,
            "calls": dict(self.calls),
            "data_reads": self.reads,
            "data_writes": self.writes,
        }


def _strings(args: str) -> list[str]:
    return re.findall(r'"((?:[^"\\]|\\.)*)"', args)


def _first_int(args: str) -> int | None:
    head = args.split(",", 1)[0].strip()
    return int(head) if head.lstrip("-").isdigit() else None


def count_round_trips(log: str, root: str) -> dict[str, Counts]:
    """Per marked request class, the round trips on paths at or under `root` (an absolute, resolved path)."""
    prefix = root.rstrip("/") + "/"
    fds: dict[tuple[int, int], str] = {}
    classes: dict[str, Counts] = {}
    current: Counts | None = None

    def ours(path: str) -> bool:
        return path == root or path.startswith(prefix)

    for line in log.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        pid, name, args, ret_text, errno_name = (
            int(match[1]),
            match[2],
            match[3],
            match[4],
            match[5],
        )
        ret = int(ret_text) if ret_text != "?" else -1
        strings = _strings(args)
        if name in ("stat", "newfstatat", "statx") and strings and strings[0].startswith(MARK_DIR + "/"):
            label = strings[0][len(MARK_DIR) + 1 :]
            current = classes.setdefault(label, Counts())
            continue
        if name in ("open", "openat", "creat"):
            if strings and ours(strings[0]):
                if ret >= 0:
                    fds[(pid, ret)] = strings[0]
                    if current is not None:
                        current.add("open")
                elif current is not None:
                    current.add("lookup miss" if errno_name == "ENOENT" else "open")
            continue
        if name in ("dup", "dup2", "dup3"):
            fd = _first_int(args)
            if fd is not None and (pid, fd) in fds and ret >= 0:
                fds[(pid, ret)] = fds[(pid, fd)]
            continue
        fd = _first_int(args)
        on_ours = fd is not None and (pid, fd) in fds
        if name == "close":
            if on_ours:
                assert fd is not None
                del fds[(pid, fd)]
                if current is not None:
                    current.add("close")
            continue
        if current is None:
            continue
        if name == "fcntl":
            if on_ours and any(command in args for command in _LOCK_COMMANDS):
                current.add("lock")
        elif name in ("fsync", "fdatasync"):
            if on_ours:
                current.add("fsync")
        elif name == "getdents64":
            if on_ours and ret > 0:
                current.add("readdir")
        elif name in ("pread64", "read"):
            if on_ours:
                current.reads += 1
        elif name in ("pwrite64", "write", "ftruncate"):
            if on_ours:
                current.writes += 1
        elif name in _NAME_CALLS:
            if any(ours(s) for s in strings):
                current.add(_NAME_CALLS[name])
        elif name in _PATH_CALLS and strings and strings[0] and ours(strings[0]):
            current.add("lookup hit" if ret >= 0 else "lookup miss")
    return classes
