"""Skip markers shared by the held-out suite's tests (imported by them; not a test module)."""

from __future__ import annotations

import pytest

from grace_st.suite_manpages import ManPagesNotFoundError, man_dir


def have_man_pages() -> bool:
    """True when the Linux man pages the suite reads are installed (``make setup`` installs them)."""
    try:
        man_dir()
    except ManPagesNotFoundError:
        return False
    return True


needs_man_pages = pytest.mark.skipif(
    not have_man_pages(), reason="Linux man-pages not installed: `make setup` (apt-get install manpages-dev)"
)
