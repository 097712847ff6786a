"""A JSON-lines output that a killed run leaves half-finished on purpose, so the same command continues it.

GRACE writes a rationale for every text: a corpus is hours of generation, and a kill, a crash or a bad line late in
the file must not cost the finished part. One rule holds for both ways of encoding a corpus: *a rerun of the same
command redoes at most one chunk* (the encoding cache serves it for mteb and ``GraceEncoder``; this file serves it
for ``grace encode --file ... --output OUT``):

- lines go to ``OUT.partial``, next to ``OUT``; each chunk is flushed and fsync-ed before the next is encoded;
- ``OUT.partial.json`` (written first) records what produced them: the model's fingerprint, the prompt and the
  input file, so a rerun with another model or settings is refused instead of mixing vectors;
- a rerun checks that the finished lines are the input's first texts, in order, cuts a torn last line (a kill in
  the middle of a write) and appends the rest;
- when every text is written the partial is renamed over ``OUT`` in one step (``OUT`` is never half-written, as
  with :func:`~grace_st.atomic.atomic_file`) and the record removed.

Unlike :func:`~grace_st.atomic.atomic_file`'s temporary siblings, which a failure, Ctrl-C or SIGTERM removes and a
later save sweeps up once their process is gone, this partial is kept on every kind of stop: it is the finished
work. Its name carries no process id, so :func:`~grace_st.atomic.remove_stale` never touches it. Only an empty
partial (nothing finished) is removed. Two runs on one output at once are refused (an OS lock on the record).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from .atomic import check_writable, remove_stale
from .errors import GraceUserError


FORMAT = 1


class ResumableJsonl:
    """Append JSON lines to ``target``'s partial file; rename it over ``target`` when the block ends without error.

    Args:
        target: the final output file.
        manifest: what must be equal for a rerun to continue the partial (JSON-serialisable).

    Use::

        with ResumableJsonl(out, manifest) as output:
            done = output.resume(texts)       # checks and skips the texts already written
            for lines in ...: output.write(lines)
    """

    def __init__(self, target: str | os.PathLike, manifest: dict[str, Any]) -> None:
        self.target = check_writable(target)
        self.partial = self.target.with_name(f"{self.target.name}.partial")
        self.record = self.target.with_name(f"{self.target.name}.partial.json")
        self.manifest = {"format": FORMAT, **manifest}
        self.written = 0  # lines in the partial: resumed plus new
        self._handle: IO[bytes] | None = None
        self._lock: IO[bytes] | None = None

    def __enter__(self) -> ResumableJsonl:
        remove_stale(self.target)
        self._lock = _lock(self.record, self.target)
        try:
            self._check_or_start()
        except BaseException:
            self._release()
            raise
        return self

    def _check_or_start(self) -> None:
        if self.record.stat().st_size == 0 or not self.partial.exists():  # a fresh start
            if self.partial.exists():  # (a record left by a run killed right after its rename is simply rewritten)
                raise GraceUserError(
                    f"'{self.partial}' exists without its record '{self.record.name}', so it cannot be checked. "
                    "Delete it to start over, or move it away."
                )
            self._write_record()
            return
        try:
            saved = json.loads(self.record.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            saved = None
        if saved != self.manifest:
            saved = saved if isinstance(saved, dict) else {}
            differs = sorted(k for k in {*saved, *self.manifest} if saved.get(k) != self.manifest.get(k))
            raise GraceUserError(
                f"'{self.partial}' holds the finished part of an earlier run with other {', '.join(differs)}; "
                "continuing it would mix vectors. Rerun with the same model, settings and input to continue, or "
                f"delete '{self.partial}' and '{self.record}' to start over."
            )

    def _write_record(self) -> None:
        data = json.dumps(self.manifest, sort_keys=True).encode("utf-8")
        fd = os.open(self.record, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def resume(self, texts: Any) -> int:
        """Consume from the iterator ``texts`` the texts the partial already holds, checking each; returns how many.

        A line that is torn or not a JSON object with ``text`` ends the finished part: it and what follows are cut.
        """
        self._handle = open(self.partial, "a+b")  # noqa: SIM115 - closed in __exit__
        self._handle.seek(0)
        good_end = 0
        for number, raw in enumerate(self._handle, 1):
            text = _finished_text(raw)
            if text is None:
                break
            expected = next(texts, None)
            if expected != text:
                shown = "the input ends there" if expected is None else f"the input's text is {expected[:80]!r}"
                raise GraceUserError(
                    f"Line {number} of '{self.partial}' is for {text[:80]!r}, but {shown}: the input changed since "
                    f"the interrupted run. Rerun with the original input to continue, or delete '{self.partial}' "
                    f"and '{self.record}' to start over."
                )
            good_end += len(raw)
            self.written += 1
        self._handle.truncate(good_end)
        self._handle.seek(good_end)
        return self.written

    def write(self, lines: list[str]) -> None:
        """Append one chunk's lines and make them durable before the caller encodes the next chunk."""
        if self._handle is None:
            raise RuntimeError("call resume() before write()")
        self._handle.write("".join(line + "\n" for line in lines).encode("utf-8"))
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.written += len(lines)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            if self._handle is not None:
                self._handle.close()
            if kind is None:
                self.partial.touch()  # an empty input still gives an (empty) output
                os.replace(self.partial, self.target)
                self.record.unlink(missing_ok=True)
            elif not self.partial.exists() or self.partial.stat().st_size == 0:  # nothing finished to keep
                self.partial.unlink(missing_ok=True)
                self.record.unlink(missing_ok=True)
        finally:
            self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the descriptor releases the OS lock
            self._lock = None


def _finished_text(raw: bytes) -> str | None:
    """The text of one complete output line, or None for a torn or foreign one."""
    if not raw.endswith(b"\n"):
        return None
    try:
        record = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    text = record.get("text") if isinstance(record, dict) else None
    return text if isinstance(text, str) and "embedding" in record else None


def _lock(record: Path, target: Path) -> IO[bytes]:
    """Hold an exclusive OS lock on the record file (created empty if missing); the OS drops it when we die."""
    import fcntl

    handle = open(record, "a+b")  # noqa: SIM115 - kept open while the lock is held
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise GraceUserError(
            f"Another run is writing '{target}' right now (it holds '{record}'). Wait for it, or choose another "
            "--output."
        ) from None
    return handle
