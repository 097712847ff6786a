"""The one exception type for mistakes a user can fix: a bad value, a missing file, an unknown model or task.

Why one type: the command lines print a user's mistake as one ``grace: error:`` line (exit 2) and let every other
exception keep its traceback, because an internal ``ValueError`` is a bug to report, not advice to act on. Catching
``ValueError`` wholesale hides such bugs; catching this type does not. It subclasses ``ValueError`` so callers (and
tests) that already expect a ``ValueError`` for bad input keep working; :class:`GraceUserTypeError` is the same for
a value of the wrong type (a ``TypeError`` too), and the "not found" errors (backbone, WordNet, man pages) subclass
it together with ``OSError``/``FileNotFoundError``.

The message names the offending value and the fix; raise it only where the cause is the caller's input or
environment, never for a broken invariant inside the library.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable


class GraceUserError(ValueError):
    """A mistake in the caller's input or environment; the message names the value and how to fix it."""


class GraceUserTypeError(GraceUserError, TypeError):
    """A value of the wrong type given by the caller (a ``TypeError`` as well, as Python users expect)."""


class GraceFileNotFoundError(GraceUserError, FileNotFoundError):
    """A file or folder the caller named does not exist (a ``FileNotFoundError`` too)."""


class GraceFileExistsError(GraceUserError, FileExistsError):
    """The caller's output path is taken and would be overwritten (a ``FileExistsError`` too)."""


BUG_REPORT = (
    "grace: this is a bug in grace-st or a library it uses, not a mistake in your input; please report it with the "
    "traceback above at https://github.com/grace-st/grace-st/issues"
)
"""What the command lines print under the traceback of an unexpected exception."""


def report_errors(run: Callable[[], int | None]) -> int:
    """Run a command line's work: a user mistake is one ``grace: error:`` line and exit 2; anything else is a bug.

    A bug keeps its full traceback, followed by :data:`BUG_REPORT`, and exits 1: hiding it behind one line would
    send the user looking for a mistake they did not make. Ctrl-C and ``SystemExit`` pass through untouched.
    """
    from .terminal import printable

    try:
        result = run()
    except GraceUserError as exc:
        print(f"grace: error: {printable(str(exc))}", file=sys.stderr)
        return 2
    except Exception:  # noqa: BLE001 - reported as a bug, with its traceback, never swallowed
        traceback.print_exc()
        print(BUG_REPORT, file=sys.stderr)
        return 1
    return 0 if result is None else result
