"""GRACE's messages go through ``logging`` (logger ``grace_st``); the command lines show them as ``grace: ...`` lines.

Why: library code that prints decides for every caller where text goes; a logger lets an application route, filter
or silence it, and lets tests capture it. The ``grace`` command lines call :func:`log_to_console` once, which shows
INFO and above on stderr in the style of the rest of the CLI. Nothing is configured on import.
"""

from __future__ import annotations

import logging
import sys


LOGGER = "grace_st"


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the message (a redirected or captured one included)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # the base class assigns it; the current stderr is always used
        pass


def log_to_console() -> None:
    """Show GRACE's INFO-and-above messages on stderr as ``grace: <message>`` (idempotent)."""
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(handler, _CurrentStderr) for handler in logger.handlers):
        handler = _CurrentStderr()
        handler.setFormatter(logging.Formatter("grace: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
