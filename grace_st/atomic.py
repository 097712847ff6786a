"""Write a file or a folder under a temporary sibling name, then rename it into place: the one way GRACE saves.

Why: a reader (or a later run) must never see half a model, half a JSON-lines output or half a card, and a failed
or stopped run must not leave its temporary copy behind (a model folder is hundreds of MB). So every save goes
through here:

- the temporary sibling is named ``.<name>.<pid>-<random>.partial`` in the target's own folder (same filesystem,
  so the final ``os.replace`` is atomic), and records the process that owns it;
- an exception, Ctrl-C (``KeyboardInterrupt``) or SIGTERM removes it (SIGTERM is then re-raised, so the process
  still ends as killed by SIGTERM);
- a kill -9 cannot be caught: the next save to the same target removes leftovers whose recorded process is no
  longer alive (never by file age, so a slow live writer is never robbed);
- the result gets the permissions a plain ``open``/``mkdir`` would give under the user's umask (temporary files are
  created private, ``0600``/``0700``), unless ``private=True`` keeps it readable by its owner only.

One writer keeps its partial file on purpose: ``grace encode --output`` (:mod:`grace_st.resumable_output`), whose
finished chunks are hours of generation that the same command continues. Its ``OUT.partial`` carries no process id,
so :func:`remove_stale` never takes it for a leftover.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .errors import GraceUserError


_SUFFIX = ".partial"
_OLD = ".old"
_live: dict[Path, Callable[[], None]] = {}  # this process's temporary paths -> how the SIGTERM handler undoes them
_lock = threading.Lock()


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (``os.umask`` alone must set one)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _set_mode(path: Path, private: bool) -> None:
    """Give ``path`` (file or folder) the mode ``open``/``mkdir`` would have given it, or owner-only access."""
    base = 0o777 if path.is_dir() else 0o666
    os.chmod(path, base & 0o700 if private else base & ~_umask())


def _temp_sibling(target: Path, suffix: str = _SUFFIX) -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}{suffix}")


def _owner_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_stale(target: str | os.PathLike) -> list[Path]:
    """Remove temporary siblings of ``target`` left by processes that no longer run (e.g. killed with -9).

    A leftover ``.old`` copy is the previous version of ``target`` moved aside during a replacement; if ``target``
    itself is missing (the kill fell between the two renames), the copy is put back instead of removed.
    Returns the paths removed or restored.
    """
    target = Path(target)
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(\d+)-[0-9a-f]+({re.escape(_SUFFIX)}|{re.escape(_OLD)})$")
    handled: list[Path] = []
    if not target.parent.is_dir():
        return handled
    for entry in sorted(target.parent.iterdir()):
        found = pattern.match(entry.name)
        if found is None or _owner_alive(int(found.group(1))):
            continue
        if found.group(2) == _OLD and not target.exists():
            os.replace(entry, target)
        else:
            _remove(entry)
        handled.append(entry)
    return handled


def _on_signal(signum: int, frame: Any) -> None:
    """Remove this process's temporary paths, then die of the same signal as if no handler had been installed."""
    for undo in list(_live.values()):
        undo()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


@contextmanager
def _tracked(path: Path, undo: Callable[[], None]) -> Iterator[None]:
    """Register ``undo`` (removes ``path``) for the SIGTERM handler, which stays installed while any path is live.

    The handler replaces only the default action (a process that handles SIGTERM itself, such as a training run
    finishing its step, keeps its handler). SIGINT needs none: its default raises ``KeyboardInterrupt``.
    """
    main_thread = threading.current_thread() is threading.main_thread()
    with _lock:
        _live[path] = undo
        if main_thread and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_signal)
    try:
        yield
    finally:
        with _lock:
            _live.pop(path, None)
            if main_thread and not _live and signal.getsignal(signal.SIGTERM) is _on_signal:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)


def check_writable(target: str | os.PathLike, *, directory: bool = False) -> Path:
    """Fail early, before any slow work, if ``target`` cannot be written; returns the resolved path.

    Checks what a user can fix: the target is of the wrong kind (a folder where a file is meant, or the reverse),
    or its folder cannot be created or written to.
    """
    path = Path(target).expanduser().resolve()
    kind = "folder" if directory else "file"
    if path.exists() and path.is_dir() != directory:
        actual = "a folder" if path.is_dir() else "a file"
        raise GraceUserError(f"'{path}' is {actual}, but a {kind} is to be written there. Choose another path.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GraceUserError(f"Cannot create the folder '{path.parent}' for '{path}': {exc.strerror}.") from exc
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise GraceUserError(
            f"Cannot write '{path}': no write permission in '{path.parent}'. Choose a folder you can write to."
        )
    return path


@contextmanager
def atomic_file(
    target: str | os.PathLike, mode: str = "w", *, private: bool = False, **open_kwargs: Any
) -> Iterator[IO]:
    """Open a temporary sibling of ``target`` for writing; on success it replaces ``target`` in one rename.

    ``open_kwargs`` go to ``open`` (``encoding`` defaults to UTF-8 in text mode). On any exception, Ctrl-C or
    SIGTERM the temporary file is removed and ``target`` is left as it was.
    """
    target = check_writable(target)
    remove_stale(target)
    tmp = _temp_sibling(target)
    if "b" not in mode:
        open_kwargs.setdefault("encoding", "utf-8")
    with _tracked(tmp, lambda: tmp.unlink(missing_ok=True)):
        try:
            with open(tmp, mode, opener=lambda path, flags: os.open(path, flags, 0o600), **open_kwargs) as handle:
                yield handle
            _set_mode(tmp, private)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def write_text_atomic(target: str | os.PathLike, text: str, *, private: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``target`` through :func:`atomic_file`; returns the resolved path."""
    with atomic_file(target, private=private) as handle:
        handle.write(text)
    return Path(target).expanduser().resolve()


class Staging:
    """The temporary folder of :func:`atomic_directory`, and what was moved into it from elsewhere."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._moved_in: list[tuple[Path, Path]] = []

    def move_in(self, source: Path, name: str) -> Path:
        """Move ``source`` (same filesystem) into the staged folder; a failed save moves it back, so it survives."""
        destination = self.path / name
        os.replace(source, destination)
        self._moved_in.append((destination, source))
        return destination

    def discard(self) -> None:
        """Move back what was moved in, then remove the temporary folder."""
        for destination, source in reversed(self._moved_in):
            if destination.exists() and not source.exists():
                os.replace(destination, source)
        _remove(self.path)


@contextmanager
def atomic_directory(target: str | os.PathLike, *, private: bool = False) -> Iterator[Staging]:
    """Fill a temporary sibling folder of ``target``; on success it replaces ``target`` (if any) in place.

    The caller decides whether replacing an existing ``target`` is allowed (check first, e.g. ``--overwrite``). An
    existing ``target`` is renamed aside, the new folder renamed in, then the old one removed, so ``target`` is
    complete at every instant except between two renames (and :func:`remove_stale` repairs that one gap after a
    kill -9). On failure, the temporary folder is removed and whatever was moved in with
    :meth:`Staging.move_in` is moved back.
    """
    target = check_writable(target, directory=True)
    remove_stale(target)
    staging = Staging(_temp_sibling(target))
    with _tracked(staging.path, staging.discard):
        try:
            staging.path.mkdir(mode=0o700)
            yield staging
            _set_mode(staging.path, private)
            _swap_into_place(staging.path, target)
        except BaseException:
            staging.discard()
            raise


def _swap_into_place(complete: Path, target: Path) -> None:
    if not target.exists():
        os.replace(complete, target)
        return
    old = _temp_sibling(target, _OLD)
    os.replace(target, old)
    try:
        os.replace(complete, target)
    except BaseException:
        os.replace(old, target)
        raise
    _remove(old)
