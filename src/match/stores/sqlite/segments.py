"""Immutable index segments on disk, shared by every process on the machine.

The embedded store's two indexes (the signature codes and the visual words) keep their bulk in
segments: folders of ``.npy`` arrays that each process maps read-only (``np.load(mmap_mode=
"r")``), so the operating system holds one copy in its page cache however many workers read it;
arrays read a few small ranges at a time (the word postings) are read with ``pread`` instead
(``FileArray``). A segment covers a range of keys (image ids for the codes, word-row numbers for
the words) and is never changed; a manifest (``manifest.json``) names the live segments and how
far they reach. Whoever builds (one process at a time, under ``lock``) writes new segments into
fresh folders, then replaces the manifest atomically (write, fsync, rename, fsync the folder): a
reader sees the old set or the new one, and a crash at any point leaves the last manifest and
its segments intact. Folders no manifest names are removed by the next build.

Segments are derived from the SQLite file, which stays the only source of truth: deleting the
whole folder loses nothing (the next process rebuilds it).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import uuid
import weakref
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MANIFEST = "manifest.json"
FORMAT = 1


@dataclass(frozen=True)
class SegmentInfo:
    name: str
    first: int  # keys above this one ...
    last: int  # ... up to this one: what the segment covers
    rows: int
    tombstones: int  # the newest tombstone its build had seen: later deletions are still in it


@dataclass(frozen=True)
class Manifest:
    generation: int = 0
    through: int = 0  # every key up to this is in a segment (or was deleted before its build)
    segments: tuple[SegmentInfo, ...] = ()
    store: str = ""  # the store file's identity: segments of another file are never used

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "generation": self.generation,
                "through": self.through,
                "segments": [vars(s) for s in self.segments],
                "store": self.store,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        if data.get("format") != FORMAT:
            raise ValueError(f"segment manifest format {data.get('format')!r}")
        segments = tuple(SegmentInfo(**s) for s in data["segments"])
        return cls(data["generation"], data["through"], segments, data["store"])


class FileArray:
    """A 1-D array left in its ``.npy`` file and read by ranges with ``pread``.

    For an array of which a query reads a few hundred small ranges (a word's postings): mapped,
    the kernel makes a whole large folio of the page cache resident in the process around each
    page it touches (up to about 1 MB here), so 40 searches at 1M images left 704 MB of the
    postings mapped in the workers for about 8 MB a query read. Read, the same bytes stay in the
    shared page cache and only what is copied is the process's."""

    def __init__(self, path: Path) -> None:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
            self.offset = handle.tell()
        if len(shape) != 1 or dtype.hasobject:
            raise ValueError(f"{path} is not a flat array")
        self.dtype = dtype
        self.size = shape[0]
        self._fd = os.open(path, os.O_RDONLY)
        weakref.finalize(self, os.close, self._fd)

    def __len__(self) -> int:
        return self.size

    def read(self, starts: list[int], ends: list[int], out: np.ndarray) -> None:
        """Elements ``[starts[i]:ends[i]]`` for every i, one after the other into ``out``."""
        width = self.dtype.itemsize
        at = 0
        for start, end in zip(starts, ends, strict=True):
            if end > start:
                view = memoryview(out[at : at + end - start]).cast("B")
                done = 0
                while done < len(view):  # a regular file reads short only at its end
                    read = os.preadv(self._fd, [view[done:]], self.offset + start * width + done)
                    if read <= 0:
                        raise OSError(f"segment file ends early (fd {self._fd})")
                    done += read
                at += end - start

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize


class SegmentDirectory:
    """The segments of one index in one folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self._text = b""  # of the manifest last parsed
        self._manifest = Manifest()

    def manifest(self) -> Manifest:
        """The current manifest. Read every time (a few hundred bytes): a file's inode and
        mtime do not tell two quick builds apart, as inodes are reused within one clock tick."""
        try:
            text = (self.path / MANIFEST).read_bytes()
        except FileNotFoundError:
            return Manifest()
        if text != self._text:
            try:
                self._manifest = Manifest.from_json(text.decode())
            except (ValueError, KeyError, TypeError):
                return Manifest()  # unreadable: as if none (the next build replaces it)
            self._text = text
        return self._manifest

    def load(
        self, info: SegmentInfo, read: Collection[str] = ()
    ) -> dict[str, np.ndarray | FileArray]:
        """A segment's arrays, memory-mapped read-only, but those named in ``read``, which are
        ``FileArray``s. FileNotFoundError if a newer build removed it (the caller re-reads the
        manifest)."""
        folder = self.path / info.name
        return {
            file.stem: FileArray(file)
            if file.stem in read
            else np.load(file, mmap_mode="r", allow_pickle=False)
            for file in sorted(folder.glob("*.npy"))
        }

    @contextlib.contextmanager
    def building(self, *, blocking: bool = False) -> Iterator[bool]:
        """The build lock: True once held; without ``blocking``, False at once if another
        process holds it."""
        with open(self.path / "lock", "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def write(self, arrays: dict[str, np.ndarray]) -> str:
        """A new segment folder holding ``arrays``, durable; returns its name."""
        name = f"s-{uuid.uuid4().hex[:16]}"
        temporary = self.path / f".{name}.tmp"
        temporary.mkdir()
        for key, array in arrays.items():
            with open(temporary / f"{key}.npy", "wb") as handle:
                np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
                handle.flush()
                os.fsync(handle.fileno())
        os.rename(temporary, self.path / name)
        _sync_folder(self.path)
        return name

    def publish(self, manifest: Manifest) -> None:
        """Make ``manifest`` the current one, atomically; then remove unnamed folders."""
        temporary = self.path / f".{MANIFEST}.{uuid.uuid4().hex[:8]}"
        with open(temporary, "w") as handle:
            handle.write(manifest.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(temporary, self.path / MANIFEST)
        _sync_folder(self.path)
        named = {s.name for s in manifest.segments}
        for entry in self.path.iterdir():
            # a process that still maps a removed segment keeps reading it (its pages stay until
            # it unmaps them); one that had not opened it yet re-reads the manifest
            if entry.is_dir() and entry.name not in named:
                shutil.rmtree(entry, ignore_errors=True)
            elif entry.name.startswith("."):  # a build's leftovers, interrupted by a crash
                entry.unlink(missing_ok=True)

    def nbytes(self) -> int:
        """Bytes of the segment files the manifest names."""
        total = 0
        for info in self.manifest().segments:
            total += sum(f.stat().st_size for f in (self.path / info.name).glob("*.npy"))
        return total


def _sync_folder(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
