"""A saved GRACE folder loads with plain sentence-transformers where this library cannot be imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
from conftest import TEXTS

from grace_st import save_grace_model


_CHILD = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class Block(importlib.abc.MetaPathFinder):
        # Make this library unimportable, as if it were not installed.
        def find_spec(self, name, path=None, target=None):
            if name == "grace_st" or name.startswith("grace_st."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
            return None

    sys.meta_path.insert(0, Block())
    try:
        import grace_st  # noqa: F401
        raise SystemExit("grace_st is still importable")
    except ModuleNotFoundError:
        pass
    from sentence_transformers import SentenceTransformer

    folder, texts = sys.argv[1], json.loads(sys.argv[2])
    model = SentenceTransformer(folder, trust_remote_code=True, device="cpu")
    assert not any(name.startswith("grace_st") for name in sys.modules), "the library leaked in"
    print(json.dumps({"module": type(model[0]).__module__, "vectors": model.encode(texts).tolist()}))
    """
)


def test_saved_folder_loads_without_this_package(grace_tiny, tmp_path):
    folder = tmp_path / "grace-tiny"
    save_grace_model(grace_tiny, folder)
    expected = grace_tiny.encode(TEXTS[:3])
    env = {**os.environ, "HF_HOME": str(tmp_path / "child_hf_home"), "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(folder), json.dumps(TEXTS[:3])],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,  # not the repository root, whose folders are not on a user's path either
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["module"].startswith("transformers_modules."), "the class came from the folder's own code"
    np.testing.assert_allclose(np.array(out["vectors"]), expected, atol=1e-6)
