"""Python standard-library docstrings for the held-out suite: (summary line, rest of the docstring).

The objects are the public functions, classes and methods *defined in* each module of :data:`MODULES` (a pinned list
of pure-stdlib modules that import without side effects); re-exports and inherited docstrings are skipped, so an
object is read once, from the module that defines it. Query = the docstring's summary (its first sentence, or its
first paragraph when that has no full stop), document = the rest (whitespace collapsed, at least
:data:`MIN_BODY_CHARS`, cut to :data:`~grace_st.suite_manpages.MAX_DOCUMENT_CHARS`).

The source item is the **module** (a package's submodules count as one item): methods of one class, and functions of
one module, share vocabulary and often cross-reference each other, so a held-out test that only hid single functions
would reward memorising a module. Splitting by module asks whether the model generalises to an API it never saw.
Duplicates are removed before the split: an object whose summary or body repeats an earlier one (walking modules in
list order) is dropped, so the same text cannot sit in two splits. Docstrings change between Python releases, so the
data records the Python version and its cache file is per minor version."""

from __future__ import annotations

import importlib
import inspect
import re
import sys
import warnings
from collections.abc import Iterator
from typing import Any

from .suite_manpages import MAX_DOCUMENT_CHARS, FirstSeen, cut


MIN_BODY_CHARS = 80
MAX_SUMMARY_CHARS = 200
MODULES = (
    "abc argparse array ast asyncio.base_events asyncio.events asyncio.locks asyncio.queues asyncio.streams "
    "asyncio.tasks base64 bdb binascii builtins bz2 cProfile calendar cmd code codecs codeop collections "
    "collections.abc compileall configparser contextlib csv dataclasses datetime dbm decimal difflib dis doctest "
    "email.charset email.generator email.header email.headerregistry email.message email.parser email.policy "
    "email.utils enum fcntl filecmp fileinput fnmatch fractions ftplib functools gc glob graphlib gzip hashlib heapq "
    "hmac html.parser http.client http.cookiejar http.server imaplib importlib.metadata inspect io ipaddress "
    "itertools json json.decoder json.encoder linecache locale logging logging.handlers lzma mailbox marshal math "
    "mimetypes multiprocessing.managers multiprocessing.pool numbers operator optparse os pathlib pdb pickle "
    "pickletools pkgutil platform poplib posix pprint profile pstats queue quopri random re sched secrets select "
    "selectors shelve shutil signal site smtplib socket socketserver sqlite3 ssl statistics subprocess symtable sys "
    "sysconfig tarfile tempfile textwrap threading timeit tokenize trace traceback tracemalloc types typing "
    "unicodedata unittest.case unittest.mock urllib.parse urllib.request uuid warnings wave weakref webbrowser "
    "wsgiref.handlers xml.dom.minidom xml.etree.ElementTree xmlrpc.client xmlrpc.server zipapp zipfile zlib"
).split()
_SIGNATURE = re.compile(r"^[\w.]+\(.*\)\s*(->.*)?$")
_WORDS = re.compile(r"\s+")
_SENTENCE = re.compile(r"(.+?[.!?])\s")


def python_version() -> str:
    """``"3.11"``: docstrings are fixed for a Python minor version, so it names the data."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def split_docstring(doc: str | None) -> tuple[str, str] | None:
    """``(summary, body)`` of a docstring, or ``None`` when it has no usable summary or too short a body.

    A first line that is only a call signature (C functions' old style, ``"sorted(iterable, /, ...)"``) is not a
    summary a user would search with, so such docstrings are skipped.
    """
    if not doc:
        return None
    text = inspect.cleandoc(doc)
    first, _, rest = text.partition("\n\n")
    first = _WORDS.sub(" ", first).strip()
    sentence = _SENTENCE.match(first)  # a summary wrapped over lines ends at its first full stop
    summary = sentence.group(1) if sentence else first
    body = _WORDS.sub(" ", f"{first[len(summary) :]} {rest}").strip()
    if not 8 <= len(summary) <= MAX_SUMMARY_CHARS or _SIGNATURE.match(summary) or len(body) < MIN_BODY_CHARS:
        return None
    return summary, cut(body, MAX_DOCUMENT_CHARS)


def _own_objects(module: Any) -> Iterator[tuple[str, Any]]:
    """Public functions and classes defined in ``module``, and the methods each class defines itself."""
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isclass(obj):
            yield name, obj
            for attribute, member in sorted(vars(obj).items()):
                if attribute.startswith("_"):
                    continue
                if isinstance(member, (staticmethod, classmethod)):
                    member = member.__func__
                if inspect.isroutine(member) or isinstance(member, property):
                    yield f"{name}.{attribute}", member
        elif inspect.isroutine(obj):
            yield name, obj


def iter_docstrings(modules: tuple[str, ...] | list[str] = MODULES) -> Iterator[dict[str, str]]:
    """Every usable docstring as ``{"item", "group", "query", "document", "object"}``, deduplicated, in order.

    ``item`` is the top-level module or package (the split unit: ``email.message`` and ``email.utils`` are one
    item), ``group`` the module a training negative is drawn from.
    A module missing from this interpreter is skipped (the data records the Python version it was built with).
    """
    seen = FirstSeen()
    for module_name in modules:
        with warnings.catch_warnings():  # deprecated aliases (typing.io, ...) warn when their __doc__ is read
            warnings.simplefilter("ignore")
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            objects = [(name, obj.__doc__) for name, obj in _own_objects(module)]
        for name, doc in objects:
            parts = split_docstring(doc)  # own docstring only: inspect.getdoc would inherit one
            if parts is None:
                continue
            query, document = parts
            if not seen.is_new(query, document):
                continue
            item = module_name.split(".")[0]  # a package's submodules are one source item
            yield {"item": item, "group": module_name, "query": query, "document": document, "object": name}
