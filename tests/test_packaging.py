"""The installed package: cheap to import, and no clash with a user's own ``modeling.py`` / ``train.py``."""

from __future__ import annotations

import subprocess
import sys


def test_user_modeling_and_train_modules_do_not_clash(tmp_path):
    """A user's project with its own modules named like our folders keeps both working."""
    (tmp_path / "modeling.py").write_text("WHO = 'user modeling'\n")
    (tmp_path / "train.py").write_text("WHO = 'user train'\n")
    code = (
        "import modeling, train, grace_st.modeling as gm; "
        "from grace_st.modeling.spans import SPANS; "
        "print(modeling.WHO, '|', train.WHO, '|', gm.__name__, len(SPANS))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "user modeling | user train | grace_st.modeling 3"


def test_importing_grace_st_is_cheap():
    """``import grace_st`` must not pull in torch or sentence-transformers (no import-time side effects)."""
    code = "import sys, grace_st; print(sorted(m for m in ('torch', 'sentence_transformers') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_submodules_are_reachable_after_import_grace_st():
    """The README's ``grace_st.streaming.encode_stream(...)`` works after a plain ``import grace_st``."""
    code = "import grace_st; print(grace_st.streaming.encode_stream.__name__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "encode_stream"
