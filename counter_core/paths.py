"""Counter IDs and the files that hold them.

An ID never becomes a path: it is hashed, and the hash is fanned out over two directory levels
(`ROOT/ab/cd/<sha256>.sqlite3`, 65,536 directories), because AWS advises limiting the number of files
per directory on EFS.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections.abc import Iterator

from counter_core.errors import InvalidCounterId
from counter_core.values import Value

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at cold start (figure 3)
if TYPE_CHECKING:
    from pathlib import Path

    StrPath = str | os.PathLike[str]

MAX_ID_LENGTH = 256
# Characters an ID cannot carry through API Gateway's HTTP API, which percent-decodes the path
# before routing and before it builds the event (live captures: hotsock/voker, vokerhttp/testdata/
# ingress-paths.json): a decoded `/` splits the path, so `/counters/{id}` no longer matches; a decoded
# `?` cuts the path there; `%25` alone is refused with 400, and `%2525` arrives as `%` (the path is
# decoded twice), so no `%` arrives reliably, and with none in an ID, decoding once or twice is the
# same. `#` reaches a catch-all route's rawPath, but whether `{id}` matches it is unverified, so it
# is refused too (allowing it later is compatible; refusing it later would not be).
UNCARRIED = "/?#%"
# `.` and `..` are dot segments: clients remove them from a URL before sending it (RFC 3986 5.2.4).
DOT_SEGMENTS = (".", "..")
# The same rule as validate_counter_id, as a JSON Schema (ECMA 262) pattern for the OpenAPI document,
# without lookahead (not every generator supports it): Unicode category Cc is exactly U+0000-U+001F
# and U+007F-U+009F; the three alternatives of the first characters leave out "." and "..".
_ALLOWED = "[^\\u0000-\\u001F\\u007F-\\u009F/?#%]"
_NO_DOT = "[^\\u0000-\\u001F\\u007F-\\u009F/?#%.]"
ID_PATTERN = f"^(?:{_NO_DOT}|\\.{_NO_DOT}|\\.\\.{_ALLOWED}){_ALLOWED}*$"
SUFFIX = ".sqlite3"
_FILE_NAME = re.compile(r"^[0-9a-f]{64}\.sqlite3$")
# counter_core.create's private build file: `<counter file name>.<pid>-<8 hex>.tmp`.
_TEMPORARY_NAME = re.compile(r"^[0-9a-f]{64}\.sqlite3\.[0-9]+-[0-9a-f]{8}\.tmp$")
_FAN_OUT = re.compile(r"^[0-9a-f]{2}$")


def validate_counter_id(counter_id: str) -> str:
    """Return the ID if API Gateway's HTTP API can deliver it, else raise InvalidCounterId.

    That is 1 to 256 characters, none of them a control character or one of `/ ? # %`, and not
    `.` or `..`. IDs are compared as exact code points: no Unicode normalisation, so NFC and NFD
    spellings of the same text are different counters.
    """
    if not counter_id:
        raise InvalidCounterId("counter ID is empty - use 1 to 256 characters")
    if len(counter_id) > MAX_ID_LENGTH:
        raise InvalidCounterId(
            f"counter ID is {len(counter_id)} characters long - use at most {MAX_ID_LENGTH}"
        )
    if counter_id in DOT_SEGMENTS:
        raise InvalidCounterId(
            f"counter ID {counter_id!r} is a dot segment, which URLs drop - use other characters"
        )
    for position, char in enumerate(counter_id):
        if char in UNCARRIED:
            raise InvalidCounterId(
                f"counter ID has {char!r} at position {position}, which API Gateway's HTTP API cannot"
                " carry in a path segment - use other characters"
            )
        # Cc covers C0, DEL and C1 controls; Cs (lone surrogates) cannot be encoded as UTF-8 at all.
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise InvalidCounterId(
                f"counter ID has a control character (U+{ord(char):04X}) at position {position} - remove it"
            )
    return counter_id


def counter_hash(counter_id: str) -> str:
    return hashlib.sha256(counter_id.encode("utf-8")).hexdigest()


def resolve_root(root: StrPath) -> str:
    """COUNTERS_ROOT as an absolute path without symbolic links, resolved once per process.

    Counter files are opened with SQLITE_OPEN_NOFOLLOW, which refuses a link anywhere in the path
    (SQLite's unix VFS resolves every component: https://sqlite.org/c3ref/open.html). The root may
    legitimately be reached through one (macOS's /tmp and /var, a mount reached through a link), so it
    is resolved here, and only what lies below it is refused when it is a link.
    """
    return os.path.realpath(root)


def counter_file(root: str, counter_id: str) -> str:
    """The file of a (validated) counter ID: ROOT/<h[0:2]>/<h[2:4]>/<h>.sqlite3. Pure; touches nothing.

    A string, for the request path (which imports no pathlib); counter_path is the same as a Path.
    """
    digest = counter_hash(validate_counter_id(counter_id))
    return os.path.join(root, digest[0:2], digest[2:4], f"{digest}{SUFFIX}")


def counter_path(root: StrPath, counter_id: str) -> Path:
    """counter_file as a Path, for tools and tests."""
    from pathlib import Path

    return Path(counter_file(os.fspath(root), counter_id))


def is_shard_prefix(name: str) -> bool:
    """Whether a name is a fan-out directory name: two lowercase hex digits."""
    return _FAN_OUT.match(name) is not None


def is_counter_file_basename(name: str) -> bool:
    """Whether a bare file name is shaped like a counter file's: `<64 hex>.sqlite3`."""
    return _FILE_NAME.match(name) is not None


def is_counter_file_name(path: Path) -> bool:
    """Whether a path is shaped like a counter file (`ab/cd/abcd....sqlite3`) - fleet tools touch no other."""
    return (
        is_counter_file_basename(path.name)
        and path.parent.name == path.name[2:4]
        and path.parent.parent.name == path.name[0:2]
    )


def _scan(directory: str) -> list[os.DirEntry[str]]:
    """A directory's entries sorted by name, or none if it is gone or not a directory (one listing)."""
    try:
        with os.scandir(directory) as entries:
            return sorted(entries, key=lambda entry: entry.name)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _fan_out_dirs(root: Path, prefixes: tuple[str, ...] | None = None) -> Iterator[tuple[str, str]]:
    """The second-level fan-out directories (`ab/cd` as (path, "abcd")), sorted; only under `prefixes`.

    `DirEntry.is_dir()` answers from the listing's file type for a directory (d_type), so the walk
    makes no call per directory beyond listing it; a symlinked fan-out directory is still followed
    (one stat), and every counter file below it is then refused by SQLITE_OPEN_NOFOLLOW and reported.
    """
    if prefixes is not None:
        firsts = sorted(prefixes)
    else:
        firsts = [entry.name for entry in _scan(str(root)) if is_shard_prefix(entry.name) and entry.is_dir()]
    for first in firsts:
        for entry in _scan(f"{root}/{first}"):
            if is_shard_prefix(entry.name) and entry.is_dir():
                yield entry.path, first + entry.name


class FleetEntry(Value):
    """A name the fleet walk found: a counter file's, or a stray build file's (`temporary`).

    `regular` is the directory listing's word on the file type: False for a FIFO, directory, symlink,
    socket or device, which fleet tools report and never open (a FIFO would block the open forever).
    """

    __slots__ = ("path", "regular", "temporary")

    def __init__(self, path: Path, regular: bool, temporary: bool = False) -> None:
        self.path = path
        self.regular = regular
        self.temporary = temporary


def walk_fleet(
    root: Path, *, prefixes: tuple[str, ...] | None = None, after: str | None = None
) -> Iterator[FleetEntry]:
    """Counter files and stray build files under ROOT, in one walk, in a stable order (by name).

    One `os.scandir` per directory and no call per file: scandir returns each entry's type with the
    listing (d_type), so `is_file(follow_symlinks=False)` costs nothing; where the file system leaves
    the type out (DT_UNKNOWN), it falls back to one lstat - the cost every file had before, never more.
    On NFS the listing is a READDIR: the Linux client fills d_type from the type attribute of the
    reply (fs/nfs/nfs4xdr.c, nfs4_decode_dirent), which READDIRPLUS always carries and plain READDIR
    carries since the patch "NFSv4: Always ask for type with READDIR" (2023). Measured with strace
    (tools.bench figure 5e, 200 files): status made 55.3 round trips per file with two walks and an
    lstat per file, 45.2 with this walk, as many as raw APSW's scandir walk and reads.
    Names shaped like neither are skipped, never followed. `prefixes` limits the walk to first-level
    fan-out directories (e.g. ("0a", "ff")); `after` resumes strictly after a file name, so a worker
    that ran out of time can hand on where it stopped. A build file sorts right after its counter's
    name (`<name>.<pid>-<token>.tmp`).
    """
    from pathlib import Path  # the fleet tools' walk, never a request's: see counter_file

    for directory, shard in _fan_out_dirs(root, prefixes):
        if after is not None and shard < after[:4]:
            continue
        for entry in _scan(directory):
            name = entry.name
            if not name.startswith(shard) or (after is not None and name <= after):
                continue
            if _FILE_NAME.match(name):
                yield FleetEntry(Path(entry.path), entry.is_file(follow_symlinks=False))
            elif _TEMPORARY_NAME.match(name):
                yield FleetEntry(Path(entry.path), entry.is_file(follow_symlinks=False), temporary=True)


def iter_counter_files(
    root: Path, *, prefixes: tuple[str, ...] | None = None, after: str | None = None
) -> Iterator[Path]:
    """Counter files under ROOT in a stable order (sorted by hash), never following other names.

    The paths of `walk_fleet`'s counter entries, whatever their type: callers that open them check it.
    """
    for entry in walk_fleet(root, prefixes=prefixes, after=after):
        if not entry.temporary:
            yield entry.path


def temporary_name(path: StrPath, *, pid: int, token: str) -> str:
    """The private name a new counter file is built under before it is linked to `path`."""
    return f"{os.fspath(path)}.{pid}-{token}.tmp"


def iter_stray_temporaries(root: Path, *, prefixes: tuple[str, ...] | None = None) -> Iterator[Path]:
    """Build files left by a process that died while creating a counter (never counter files)."""
    for entry in walk_fleet(root, prefixes=prefixes):
        if entry.temporary:
            yield entry.path
