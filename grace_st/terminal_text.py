"""Texts and tokens made safe and readable on a terminal.

``grace explain`` and ``grace search`` print user texts, and rationales a model wrote about them, straight to the
terminal. Such text may hold escape sequences (``\\x1b]0;...`` retitles the window, ``\\x1b[2J`` clears it) or
bidirectional overrides that reorder what is shown, so every control and bidi-formatting character is removed
before printing; line breaks and tabs become spaces, since each item is shown on one line. JSON output needs none
of this: ``json.dumps`` escapes control characters itself. (:func:`grace_st.terminal.printable` shows them as
escapes instead, for ``--show-rationales`` and error lines, where a reader may need to see that they were there;
here every item is one display line, so they are dropped and bidi overrides go too.)
"""

from __future__ import annotations

import re


_BREAKS = re.compile(r"[\t\n\r\v\f\u2028\u2029]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_VISIBLE_WHITESPACE = str.maketrans({" ": "·", "\n": "↵", "\t": "→"})


def one_line(text: str) -> str:
    """``text`` on one line with no control characters: breaks become spaces, the rest is removed."""
    return _CONTROL.sub("", _BREAKS.sub(" ", text))


def show_token(token: str) -> str:
    """A token with its whitespace visible (space ``·``, newline ``↵``, tab ``→``) and no control characters."""
    shown = _CONTROL.sub("", token.translate(_VISIBLE_WHITESPACE))
    return shown or "∅"  # a token that is all control characters (or a lone byte of a character) still shows
