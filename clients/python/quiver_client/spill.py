"""The spill directory: batches the server could not take yet, on local disk.

One batch per Arrow IPC file, named by its batch number (``00000000000000000042.arrow``)
so the directory lists in send order; the table name travels in the schema
metadata. The rule, enforced in :meth:`SpillDir.write`: a file is written
under a temporary name, fsynced, renamed into place and the directory fsynced,
so a file with a final name is whole and survives a crash. A ``.tmp`` left by a
crash never held an acknowledged batch and is removed at open.

A file is deleted only after the server confirmed its ingest; the server
deduplicates by ``event_id``, so a file resent after a crash between the two is
counted, not stored twice.

The directory is bounded (``spill_bytes_max``, ``spill_batches_max``). When it
is full, :meth:`SpillDir.has_room` says no and the logger keeps the batch in
memory, where it counts toward the queue's fill: the tiers then apply, as they
do without a spill directory.

One logger owns a directory at a time (an exclusive ``flock`` on ``.lock``).
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

_TABLE_KEY = b"quiver.table"
_SUFFIX = ".arrow"


class SpillDirBusy(RuntimeError):
    """Another logger holds the spill directory."""


@dataclass(frozen=True, slots=True)
class SpillFile:
    """One spilled batch on disk."""

    path: Path
    #: The batch number, from the file name: files are sent in this order.
    number: int
    size_bytes: int
    rows: int
    #: When it was written, seconds since the epoch.
    written_at: float


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SpillDir:
    """A bounded, crash-safe queue of batch files. Thread-safe."""

    def __init__(self, path: str | os.PathLike[str], bytes_max: int, batches_max: int) -> None:
        self.path = Path(path)
        self.bytes_max = bytes_max
        self.batches_max = batches_max
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise SpillDirBusy(f"spill directory {self.path} is in use by another logger") from None
        self._mutex = threading.Lock()
        self._bytes = 0
        self._files: dict[int, SpillFile] = {}
        for tmp in self.path.glob(f"*{_SUFFIX}.tmp"):
            tmp.unlink()
        self.corrupt: list[Path] = []

    def load(self) -> list[SpillFile]:
        """The files already there (a previous logger's), oldest first."""
        found = []
        for p in sorted(self.path.glob(f"*{_SUFFIX}")):
            try:
                number = int(p.name[: -len(_SUFFIX)])
                with pa.memory_map(str(p)) as source:
                    rows = pa.ipc.open_file(source).read_all().num_rows
            except (ValueError, OSError, pa.ArrowInvalid) as e:
                self._quarantine(p, e)
                continue
            st = p.stat()
            found.append(SpillFile(p, number, st.st_size, rows, st.st_mtime))
        with self._mutex:
            for f in found:
                self._files[f.number] = f
                self._bytes += f.size_bytes
        return found

    def _quarantine(self, path: Path, why: Exception) -> None:
        """Moves an unreadable file aside (``corrupt/``), never deletes it."""
        bad = self.path / "corrupt"
        bad.mkdir(exist_ok=True)
        try:
            path.rename(bad / path.name)
        except FileNotFoundError:
            return
        self.corrupt.append(bad / path.name)

    def quarantine(self, f: SpillFile, why: Exception) -> None:
        """Moves a file that could not be read back aside."""
        self._quarantine(f.path, why)
        with self._mutex:
            if self._files.pop(f.number, None) is not None:
                self._bytes -= f.size_bytes

    def has_room(self, size_bytes: int) -> bool:
        with self._mutex:
            return len(self._files) < self.batches_max and self._bytes + size_bytes <= self.bytes_max

    def write(self, number: int, table: str, data: pa.Table) -> SpillFile:
        """Writes one batch durably (see the module docs for the rule)."""
        final = self.path / f"{number:020d}{_SUFFIX}"
        tmp = final.with_name(final.name + ".tmp")
        data = data.replace_schema_metadata({_TABLE_KEY: table.encode()})
        with pa.OSFile(str(tmp), "wb") as sink:
            with pa.ipc.new_file(sink, data.schema) as writer:
                writer.write_table(data)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, final)
        _fsync_dir(self.path)
        f = SpillFile(final, number, final.stat().st_size, data.num_rows, time.time())
        with self._mutex:
            self._files[number] = f
            self._bytes += f.size_bytes
        return f

    def read(self, f: SpillFile) -> tuple[str, pa.Table]:
        """The table name and rows of a spilled batch."""
        with pa.memory_map(str(f.path)) as source:
            data = pa.ipc.open_file(source).read_all()
        meta = data.schema.metadata or {}
        return meta[_TABLE_KEY].decode(), data.replace_schema_metadata(None)

    def delete(self, f: SpillFile) -> None:
        """Removes a batch the server has confirmed."""
        f.path.unlink(missing_ok=True)
        # Not fsynced: a deletion lost in a crash only means a resend, which
        # the server deduplicates.
        with self._mutex:
            if self._files.pop(f.number, None) is not None:
                self._bytes -= f.size_bytes

    def stats(self) -> tuple[int, int, float | None]:
        """(batches, bytes, when the oldest was written)."""
        with self._mutex:
            oldest = min((f.written_at for f in self._files.values()), default=None)
            return len(self._files), self._bytes, oldest

    def next_number(self) -> int:
        with self._mutex:
            return max(self._files, default=0) + 1

    def close(self) -> None:
        os.close(self._lock_fd)
