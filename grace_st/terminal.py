"""Text shown on a terminal with its control characters made visible, so input cannot drive the terminal.

A text to embed (or a rationale the model wrote about it) may hold escape sequences: ``\\x1b]0;...`` retitles the
window, ``\\x1b[2J`` clears the screen, and some terminals act on far more. ``grace encode --show-rationales`` and the
one-line errors print such text to stderr, so every control character but newline and tab is shown as its escape
(``\\x1b``) instead of being sent raw. JSON output needs nothing: ``json.dumps`` already escapes them.
"""

from __future__ import annotations

import re


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: object) -> str:
    """``str(text)`` with every control character except newline and tab written as a visible escape."""
    return _CONTROL.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), str(text))
