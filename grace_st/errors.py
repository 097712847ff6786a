"""The one exception type for mistakes a user can fix: a bad value, a missing file, an unknown model or task.

Why one type: the command lines print a user's mistake as one ``grace: error:`` line (exit 2) and must let every
other exception keep its traceback, because an internal ``ValueError`` is a bug to report, not advice to act on.
Catching ``ValueError`` wholesale hides such bugs; catching this type does not. It subclasses ``ValueError`` so
callers (and tests) that already expect a ``ValueError`` for bad input keep working.

The message names the offending value and the fix; raise it only where the cause is the caller's input or
environment, never for a broken invariant inside the library.
"""

from __future__ import annotations


class GraceUserError(ValueError):
    """A mistake in the caller's input or environment; the message names the value and how to fix it."""
