"""Man-page items for the held-out suite: Debian's ``manpages-dev`` (sections 2 and 3) as (NAME line, DESCRIPTION).

A page is one source item. The query is the NAME line's description (the part after ``\\-``), the document is the
DESCRIPTION section as plain text: roff requests and escapes stripped, whitespace collapsed, cut at a word boundary
to the first :data:`MAX_DOCUMENT_CHARS` characters (a 135M backbone reads ~300 tokens of it, which keeps a
rationale-mode pass over the suite within minutes on two CPU cores).

Only pages of the Linux man-pages project are read (their ``.TH`` line names it): other ``-dev`` packages install
pages into the same folders, and a CI machine that has only ``manpages-dev`` must build the same items as a developer
machine with more packages. Alias pages (Debian ships them as symlinks; elsewhere they are ``.so`` redirects) and
pages whose description is shorter than :data:`MIN_DOCUMENT_CHARS` are dropped, and a page whose DESCRIPTION or
NAME text repeats an earlier page's (in file-name order) is dropped too, so no text can sit in two splits.
"""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Iterator
from pathlib import Path

from .errors import GraceFileNotFoundError


DEFAULT_MAN_DIR = Path("/usr/share/man")
SECTIONS = ("2", "3")
MAX_DOCUMENT_CHARS = 1200
MIN_DOCUMENT_CHARS = 150
PROJECT_MARK = "Linux man-pages"
# Requests whose arguments alternate between two fonts: the arguments are joined without spaces.
_ALTERNATING = {"BR", "RB", "BI", "IB", "IR", "RI"}
_TEXT_REQUESTS = {"B", "I", "SM", "SB", "SS", "TP", "IP", "UR", "MT", "EX"}
_NAMED_CHARS = {"aq": "'", "dq": '"', "em": "-", "en": "-", "bu": "*", "mi": "-", "lq": '"', "rq": '"', "oq": "'"}
_NAMED_CHARS |= {"cq": "'", "ga": "`", "ti": "~", "ha": "^", "rs": "\\", "co": "(c)", "<=": "<=", ">=": ">="}
_ESCAPE = re.compile(r"\\(\(..|\[[^\]]*\]|\*\(..|\*\[[^\]]*\]|\*.|f\(..|f\[[^\]]*\]|f.|s[-+]?\d|.)")
_WORDS = re.compile(r"\s+")


class ManPagesNotFoundError(GraceFileNotFoundError):
    """The Linux man-pages sections 2/3 are missing; the message says how to install them."""


def man_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding ``man2``/``man3``: ``path``, else ``$GRACE_MAN_DIR``, else ``/usr/share/man``, else the
    copy ``make setup`` unpacks into GRACE's cache where dpkg is told to skip man pages (slim Docker images)."""
    folder = Path(path or os.environ.get("GRACE_MAN_DIR") or DEFAULT_MAN_DIR)
    if path is None and not os.environ.get("GRACE_MAN_DIR") and not (folder / "man2" / "read.2.gz").is_file():
        from .backbones import grace_cache_dir

        unpacked = grace_cache_dir() / "manpages" / "usr" / "share" / "man"
        folder = unpacked if (unpacked / "man2" / "read.2.gz").is_file() else folder
    if not (folder / "man2" / "read.2.gz").is_file():
        raise ManPagesNotFoundError(
            f"The Linux man-pages (sections 2 and 3) were not found in '{folder}' (no man2/read.2.gz). Install them "
            "with `apt-get install -y manpages-dev` (Debian/Ubuntu; `make setup` does this), or point GRACE_MAN_DIR "
            "at a folder with man2/ and man3/ of gzipped Linux man-pages."
        )
    return folder


def source_release(path: str | os.PathLike[str] | None = None) -> str:
    """The man-pages release, e.g. ``"6.03"``, read from ``read(2)``'s ``.TH`` line (it names the data version)."""
    head = _read(man_dir(path) / "man2" / "read.2.gz")
    match = re.search(rf'^\.TH .*"{PROJECT_MARK} ([^"]+)"', head, flags=re.MULTILINE)
    return match.group(1) if match else "unknown"


def _read(path: Path) -> str:
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as handle:
        return handle.read()


def _unescape(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        body = match.group(1)
        if body.startswith("("):
            return _NAMED_CHARS.get(body[1:], "")
        if body.startswith("["):
            return _NAMED_CHARS.get(body[1:-1], "")
        if body[0] in "*fs":
            return ""  # strings, fonts and sizes carry no words
        return {"-": "-", "e": "\\", " ": " ", "~": " ", "0": " ", "|": "", "^": "", "&": "", "%": "", "c": ""}.get(
            body, ""
        )

    return _ESCAPE.sub(replace, text)


def _split_args(rest: str) -> list[str]:
    """Arguments of a roff request: space-separated, double quotes group words (``""`` is a literal quote)."""
    args, current, quoted, i = [], "", False, 0
    while i < len(rest):
        char = rest[i]
        if char == "\\" and i + 1 < len(rest):  # an escape (``\ `` is a space inside one argument)
            current += rest[i : i + 2]
            i += 2
            continue
        if char == '"':
            if quoted and rest[i + 1 : i + 2] == '"':
                current += '"'
                i += 1
            else:
                quoted = not quoted
        elif char in " \t" and not quoted:
            if current:
                args.append(current)
            current = ""
        else:
            current += char
        i += 1
    if current:
        args.append(current)
    return args


def roff_to_text(lines: list[str]) -> str:
    """Plain text of roff source lines: font requests keep their words, layout requests and tables vanish."""
    words: list[str] = []
    in_table = False
    for line in lines:
        if line.startswith((".TS", "'TS")):
            in_table = True
        if in_table:
            in_table = not line.startswith(".TE")
            continue
        if line.startswith((".", "'")):
            request, _, rest = line[1:].partition(" ")
            if request.startswith('\\"'):
                continue
            if request in _ALTERNATING:
                words.append("".join(_split_args(rest)))
            elif request in _TEXT_REQUESTS:
                words.append(" ".join(_split_args(rest)))
            continue  # layout (.PP, .RS, .nf, .in, ...) and unknown requests
        words.append(line)
    return _WORDS.sub(" ", _unescape("\n".join(words))).strip()


def _sections(source: str) -> dict[str, list[str]]:
    """Roff lines of each ``.SH`` section, by upper-cased heading."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in source.splitlines():
        if line.startswith(".SH"):
            heading = " ".join(_split_args(line[3:])).upper()
            current = found.setdefault(heading, [])
        elif current is not None:
            current.append(line)
    return found


def cut(text: str, limit: int = MAX_DOCUMENT_CHARS) -> str:
    """``text`` cut at the last word boundary before ``limit`` characters."""
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0]


def parse_page(source: str) -> tuple[str, str] | None:
    """``(query, document)`` of one page, or ``None`` for an alias, a foreign page or a page without a description."""
    if source.lstrip().startswith(".so ") or not re.search(rf"^\.TH .*{PROJECT_MARK}", source, flags=re.MULTILINE):
        return None
    sections = _sections(source)
    name = roff_to_text(sections.get("NAME", []))
    if " - " not in name:
        return None
    query = name.split(" - ", 1)[1].strip()
    description = roff_to_text(sections.get("DESCRIPTION", []))
    if len(query) < 8 or len(description) < MIN_DOCUMENT_CHARS:
        return None
    return query, cut(description)


class FirstSeen:
    """Tells whether a (query, document) pair repeats an earlier item's query (any case) or document.

    Both builders drop such items *before* splitting, so no text can sit in two splits.
    """

    def __init__(self) -> None:
        self.queries: set[str] = set()
        self.documents: set[str] = set()

    def is_new(self, query: str, document: str) -> bool:
        """True the first time; records the pair so that a repeat of either text is refused afterwards."""
        if query.lower() in self.queries or document in self.documents:
            return False
        self.queries.add(query.lower())
        self.documents.add(document)
        return True


def iter_pages(path: str | os.PathLike[str] | None = None) -> Iterator[dict[str, str]]:
    """Every usable page as ``{"item", "group", "query", "document"}``, in a fixed (sorted) order, deduplicated.

    ``item`` is ``"<name>.<section>"`` (the page), ``group`` the section, used to draw a training negative.
    """
    folder = man_dir(path)
    seen = FirstSeen()
    for section in SECTIONS:
        for page in sorted((folder / f"man{section}").glob("*.gz")):
            if page.is_symlink():
                continue  # Debian's alias pages
            parsed = parse_page(_read(page))
            if parsed is None:
                continue
            query, document = parsed
            if not seen.is_new(query, document):
                continue
            item = page.name[: -len(".gz")]
            yield {"item": item, "group": f"man{section}", "query": query, "document": document}
