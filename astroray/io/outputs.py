"""Writing job outputs so that they stay inside the output folder and appear whole or not at all.

:class:`OutputFolder` opens the folder once and does every later operation
relative to that open descriptor: a sub-folder or a file name that is (or
becomes) a symbolic link is never followed, so a link planted in ``--out``
cannot send a write elsewhere.  Each file is written to a temporary name that
is new and unique (``O_CREAT | O_EXCL | O_NOFOLLOW``, a random suffix) in the
target folder itself and then renamed over the final name, which is atomic:
readers see the old file or the new one, never half of one, and a link at the
final name is replaced, not written through.
"""
from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import BinaryIO, Callable

from astroray.errors import InvalidInputError

__all__ = ["OutputFolder", "check_file_name"]

_O_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_O_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_BAD_NAME = re.compile(r"[/\\\x00]")


def check_file_name(name: str, *, what: str = "file name") -> str:
    """``name`` if it is one plain path component (no separator, not ``.``/``..``, not hidden), else refuse it."""
    if not name or _BAD_NAME.search(name) or name in (".", "..") or name.startswith("."):
        raise InvalidInputError(f"{what} {name!r} is not a plain file name (no '/', '\\', NUL, or leading '.')")
    return name


class OutputFolder:
    """A folder written through one open descriptor: every write stays inside it.

    Parameters
    ----------
    path : path-like
        The folder (created if missing).  The path itself may be a link the
        user chose; it is resolved once, here.

    Examples
    --------
    >>> out = OutputFolder(tmp)                                       # doctest: +SKIP
    >>> out.write("alerts", "pair1.parquet", lambda fh: pq.write_table(table, fh))  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).resolve()
        self.path.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, _O_DIR)
        self._subs: dict[str, int] = {}

    def close(self) -> None:
        for fd in [*self._subs.values(), self._fd]:
            try:
                os.close(fd)
            except OSError:
                pass
        self._subs.clear()

    def __del__(self):
        self.close()

    def __getstate__(self):  # a descriptor does not travel between processes: reopen by path
        return {"path": str(self.path)}

    def __setstate__(self, state):
        self.__init__(state["path"])

    def _sub(self, folder: str) -> int:
        """The descriptor of sub-folder ``folder`` (made if missing); a link in its place is refused."""
        fd = self._subs.get(folder)
        if fd is not None:
            return fd
        check_file_name(folder, what="output sub-folder")
        try:
            os.mkdir(folder, 0o755, dir_fd=self._fd)
        except FileExistsError:
            pass
        try:
            fd = os.open(folder, _O_DIR | getattr(os, "O_NOFOLLOW", 0), dir_fd=self._fd)
        except OSError as exc:
            raise self._not_plain(folder, exc) from None
        self._subs[folder] = fd
        return fd

    def _not_plain(self, folder: str, exc: OSError) -> InvalidInputError:
        return InvalidInputError(f"{folder}/ in the output folder is not a plain folder (a symbolic link or a "
                                 f"file?): refusing to write through it ({exc.strerror})", source=str(self.path))

    def write(self, folder: str | None, name: str, writer: Callable[[BinaryIO], None]) -> Path:
        """Write ``folder/name`` (``folder`` None: the top) through ``writer(file)``: to a new unique
        temporary in that folder, then renamed over ``name``."""
        check_file_name(name)
        dfd = self._fd if folder is None else self._sub(folder)
        for _ in range(8):
            tmp = f".{name}.{secrets.token_hex(8)}.tmp"
            try:
                fd = os.open(tmp, _O_NEW, 0o644, dir_fd=dfd)
                break
            except FileExistsError:  # someone else's name: draw again, never reuse it
                continue
        else:
            raise OSError(f"no free temporary name for {name} in {self.path / folder}")
        try:
            with os.fdopen(fd, "wb") as fh:
                writer(fh)
            os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=dfd)
            except FileNotFoundError:
                pass
            raise
        return self.path / name if folder is None else self.path / folder / name

    def ensure(self, folder: str) -> Path:
        """Make sub-folder ``folder`` if missing (a link or a file in its place is refused) and return its path."""
        self._sub(folder)
        return self.path / folder

    def names(self, folder: str) -> list[str]:
        """Entries of ``folder`` (empty when it does not exist yet)."""
        try:
            fd = os.open(folder, _O_DIR | getattr(os, "O_NOFOLLOW", 0), dir_fd=self._fd)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise self._not_plain(folder, exc) from None
        try:
            return sorted(os.listdir(fd))
        finally:
            os.close(fd)

    def remove(self, folder: str | None, name: str) -> bool:
        """Remove ``folder/name`` (the entry itself, a link included); False when it was not there."""
        if not name or _BAD_NAME.search(name) or name in (".", ".."):
            raise InvalidInputError(f"{name!r} is not a plain file name", source=str(self.path))
        dfd = self._fd if folder is None else self._sub(folder)
        try:
            os.unlink(name, dir_fd=dfd)
            return True
        except FileNotFoundError:
            return False
