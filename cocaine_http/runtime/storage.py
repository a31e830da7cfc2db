"""The storage service and its two backends (PROTOCOL.md §2.6, §3.7).

Values are kept byte for byte: whatever ``write`` received comes back from
``read``. Only what the runtime itself reads (manifests, profiles, runlists,
app archives) is msgpack by convention; that is the node service's business.

Methods (both generations: ``0 read(collection, key)``, ``1
write(collection, key, value[, tags])``, ``2 remove(collection, key)``, ``3
find(collection, tags)``):

* A: read → chunk(msgpack(value)) + choke; write/remove → bare choke; find →
  chunk(msgpack(sorted keys)) + choke. A missing key →
  ``[5,s,[1,"object '<key>' has not been found in '<collection>'"]]`` + choke.
* B: read → ``[ch,0,[value]]``; write/remove → ``[ch,0,[]]``; find →
  ``[ch,0,[[keys]]]``. A missing key → ``[ch,1,[[0x0C, 2], same text]]``
  (generic category, ENOENT: the category a 0.12 runtime uses was not
  traced, §8; the code is what ``std::errc::no_such_file_or_directory``
  gives).

``find`` returns the keys carrying *all* the given tags, sorted; an empty
tag list or an unknown tag gives ``[]``. A ``write`` sets the key's tags to
exactly the ones given (none when omitted). ``remove`` of a missing key
succeeds.

Backends: :class:`MemoryBackend` (default, gone when the runtime stops) and
:class:`FileBackend` (``--storage DIR``): ``DIR/<collection>/k<key>`` holds
the value and ``DIR/<collection>/.tags/k<key>`` the msgpack list of tags,
names percent-encoded so any key is a safe file name; writes are atomic
(temporary file + rename).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, unquote

from ..errors import B_NOT_FOUND
from ..protocol.frames import Generation
from ..protocol.wire import packb, unpackb
from .server import Call, Method, Reply, Service, raw, text, text_list

__all__ = ["NOT_FOUND_B", "FileBackend", "MemoryBackend", "StorageBackend", "StorageService", "not_found"]

NOT_FOUND_B = B_NOT_FOUND


class StorageBackend(Protocol):
    def read(self, collection: str, key: str) -> bytes:
        """The stored bytes; :class:`KeyError` when there are none."""
        ...

    def write(self, collection: str, key: str, value: bytes, tags: list[str]) -> None: ...

    def remove(self, collection: str, key: str) -> None: ...

    def find(self, collection: str, tags: list[str]) -> list[str]: ...


def not_found(collection: str, key: str) -> str:
    return f"object '{key}' has not been found in '{collection}'"


class MemoryBackend:
    def __init__(self) -> None:
        self._data: dict[str, dict[str, tuple[bytes, frozenset[str]]]] = {}

    def read(self, collection: str, key: str) -> bytes:
        return self._data[collection][key][0]

    def write(self, collection: str, key: str, value: bytes, tags: list[str]) -> None:
        self._data.setdefault(collection, {})[key] = (bytes(value), frozenset(tags))

    def remove(self, collection: str, key: str) -> None:
        self._data.get(collection, {}).pop(key, None)

    def find(self, collection: str, tags: list[str]) -> list[str]:
        if not tags:
            return []
        wanted = set(tags)
        return sorted(k for k, (_, have) in self._data.get(collection, {}).items() if wanted <= have)


def _fname(name: str) -> str:
    return "k" + quote(name, safe="-_.")


class FileBackend:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _paths(self, collection: str, key: str) -> tuple[Path, Path]:
        base = self.root / _fname(collection)
        return base / _fname(key), base / ".tags" / _fname(key)

    def read(self, collection: str, key: str) -> bytes:
        path, _ = self._paths(collection, key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise KeyError(key) from None

    def write(self, collection: str, key: str, value: bytes, tags: list[str]) -> None:
        path, tag_path = self._paths(collection, key)
        _atomic_write(tag_path, packb(sorted(set(tags))))
        _atomic_write(path, value)

    def remove(self, collection: str, key: str) -> None:
        for path in self._paths(collection, key):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def find(self, collection: str, tags: list[str]) -> list[str]:
        if not tags:
            return []
        wanted = set(tags)
        tag_dir = self.root / _fname(collection) / ".tags"
        if not tag_dir.is_dir():
            return []
        out = []
        for entry in tag_dir.iterdir():
            if not entry.name.startswith("k"):
                continue
            try:
                have = {t.decode("utf-8", "replace") for t in unpackb(entry.read_bytes())}
            except (OSError, ValueError, TypeError):
                continue
            if wanted <= have:
                out.append(unquote(entry.name[1:]))
        return sorted(out)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class StorageService(Service):
    kind = "storage"

    def __init__(self, generation: Generation | str, backend: StorageBackend | None = None) -> None:
        super().__init__("storage", generation)
        self.backend: StorageBackend = backend if backend is not None else MemoryBackend()
        self.methods = {
            0: Method("read", self.read, Reply.VALUE, (text, text)),
            1: Method("write", self.write, Reply.VOID, (text, text, raw), (text_list,)),
            2: Method("remove", self.remove, Reply.VOID, (text, text)),
            3: Method("find", self.find, Reply.VALUE, (text, text_list)),
        }

    async def read(self, call: Call, collection: str, key: str) -> bytes:
        try:
            return self.backend.read(collection, key)
        except KeyError:
            raise self.fault(1, NOT_FOUND_B, not_found(collection, key)) from None

    async def write(
        self, call: Call, collection: str, key: str, value: bytes, tags: list[str] | None = None
    ) -> None:
        try:
            self.backend.write(collection, key, value, tags or [])
        except OSError as exc:
            raise self.fault(
                1, (0x01, exc.errno or 5), f"cannot write '{key}' in '{collection}': {exc}"
            ) from None

    async def remove(self, call: Call, collection: str, key: str) -> None:
        try:
            self.backend.remove(collection, key)
        except OSError as exc:
            raise self.fault(
                1, (0x01, exc.errno or 5), f"cannot remove '{key}' in '{collection}': {exc}"
            ) from None

    async def find(self, call: Call, collection: str, tags: list[str]) -> list[str]:
        return self.backend.find(collection, tags)
