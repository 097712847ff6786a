"""A saved GRACE folder loads with plain sentence-transformers where this library cannot be imported, on public APIs.

The folder's Python files are what a published model freezes: they may import only public, documented names of
torch, transformers and sentence-transformers (checked statically below) and import no private module at run time
(checked in a subprocess); with and without the library they give the same rationales and vectors.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
from conftest import TEXTS

from grace_st import save_grace_model
from grace_st.published_files import MODULE_CODE_FILES


_WITHOUT_LIBRARY = textwrap.dedent(
    """
    import importlib.abc, importlib.util, json, sys

    class Block(importlib.abc.MetaPathFinder):
        # Make this library unimportable, as if it were not installed.
        def find_spec(self, name, path=None, target=None):
            if name == "grace_st" or name.startswith("grace_st."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
            return None

    sys.meta_path.insert(0, Block())
    """
)

_CHILD = _WITHOUT_LIBRARY + textwrap.dedent(
    """
    try:
        import grace_st  # noqa: F401
        raise SystemExit("grace_st is still importable")
    except ModuleNotFoundError:
        pass
    from sentence_transformers import SentenceTransformer

    folder, texts = sys.argv[1], json.loads(sys.argv[2])
    model = SentenceTransformer(folder, trust_remote_code=True, device="cpu")
    assert not any(name.startswith("grace_st") for name in sys.modules), "the library leaked in"
    outputs = model.encode(texts, output_value=None)
    print(json.dumps({
        "module": type(model[0]).__module__,
        "vectors": [out["sentence_embedding"].tolist() for out in outputs],
        "rationales": [out["rationale_ids"][out["rationale_mask"].bool()].tolist() for out in outputs],
    }))
    """
)


def test_saved_folder_loads_without_this_package(grace_tiny, tmp_path):
    folder = tmp_path / "grace-tiny"
    save_grace_model(grace_tiny, folder)
    expected = grace_tiny.encode(TEXTS[:3], output_value=None)  # the library's single pass
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
    for vector, rationale, mine in zip(out["vectors"], out["rationales"], expected, strict=True):
        assert rationale == mine["rationale_ids"][mine["rationale_mask"].bool()].tolist()
        assert float(np.dot(vector, mine["sentence_embedding"].numpy())) > 1 - 1e-4


# What a folder's files may import: module -> allowed names (None: any public name). Relative imports must name a
# sibling file of the folder; grace_st only inside ``try: ... except ImportError`` (the installed fast path).
_ALLOWED = {
    "torch": None,
    "torch.nn.functional": None,
    "transformers": {"AutoModelForCausalLM", "AutoTokenizer", "GenerationConfig"},
    "sentence_transformers.base.modules": {"InputModule"},
    "packaging.version": {"Version", "InvalidVersion"},
    "jinja2.exceptions": {"TemplateError", "TemplateSyntaxError"},
}


def _guarded_by_import_error(node, parents):
    """Inside a ``try`` that catches ImportError (body or handler): the folder copy runs without that import."""
    for parent in parents:
        caught = [h.type for h in parent.handlers if h.type is not None]
        if not any(isinstance(c, ast.Name) and c.id in ("ImportError", "ModuleNotFoundError") for c in caught):
            continue
        if any(node is n for stmt in [*parent.body, *parent.handlers] for n in ast.walk(stmt)):
            return True
    return False


def _import_problems(path, siblings):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = [n for n in ast.walk(tree) if isinstance(n, ast.Try)]
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] not in sys.stdlib_module_names and alias.name not in _ALLOWED:
                    problems.append(f"import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            module, names = node.module or "", [alias.name for alias in node.names]
            if node.level:
                if f"{module}.py" not in siblings:
                    problems.append(f"from .{module} (not a file of the folder)")
            elif module.split(".")[0] == "grace_st":
                if not _guarded_by_import_error(node, parents):
                    problems.append(f"from {module} outside try/except ImportError")
            elif module == "__future__" or module.split(".")[0] in sys.stdlib_module_names:
                continue
            elif module not in _ALLOWED:
                problems.append(f"from {module}")
            elif _ALLOWED[module] is not None and not set(names) <= _ALLOWED[module]:
                problems.append(f"from {module} import {sorted(set(names) - _ALLOWED[module])}")
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            problems += [f"private name {module}.{n}" for n in private if not node.level]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in ("torch", "transformers", "F"):
                problems.append(f"private attribute .{node.attr} of {root.id}")
        elif isinstance(node, ast.Attribute) and node.attr == "ops":
            problems.append("torch.ops (private operators)")
    return problems


def test_folder_files_import_only_public_names(grace_tiny, tmp_path):
    folder = save_grace_model(grace_tiny, tmp_path / "grace-tiny")
    files = sorted(folder.glob("*.py"))
    assert {f.name for f in files} == set(MODULE_CODE_FILES), "the folder carries exactly the listed module files"
    siblings = {f.name for f in files}
    problems = {f.name: _import_problems(f, siblings) for f in files}
    assert not any(problems.values()), problems


def test_the_check_catches_what_it_must(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from transformers.cache_utils import DynamicLayer\n"
        "from grace_st.modeling.single_pass import generate_with_hidden_states\n"
        "import torch\n"
        "x = torch.ops.mkldnn._linear_pointwise\n"
    )
    problems = _import_problems(bad, {"bad.py"})
    assert "from transformers.cache_utils" in problems
    assert "from grace_st.modeling.single_pass outside try/except ImportError" in problems
    assert "torch.ops (private operators)" in problems and "private attribute ._linear_pointwise of torch" in problems


_IMPORT_CHILD = _WITHOUT_LIBRARY + textwrap.dedent(
    """
    import packaging.version, torch, torch.nn.functional, transformers, sentence_transformers  # noqa
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig  # noqa
    from sentence_transformers.base.modules import InputModule  # noqa
    before = set(sys.modules)
    folder = sys.argv[1]
    package = importlib.util.spec_from_file_location("grace_folder", f"{folder}/__init__.py",
                                                     submodule_search_locations=[folder])
    sys.modules["grace_folder"] = importlib.util.module_from_spec(package)
    importlib.import_module("grace_folder.rationale_generator")
    print(json.dumps(sorted(set(sys.modules) - before)))
    """
)


def test_importing_the_folder_module_loads_no_private_module(grace_tiny, tmp_path):
    folder = save_grace_model(grace_tiny, tmp_path / "grace-tiny")
    (folder / "__init__.py").write_text("")  # a package for the relative imports, as transformers makes one
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_CHILD, str(folder)], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    new = json.loads(result.stdout.strip().splitlines()[-1])
    assert "grace_folder.rationale_generator" in new and "grace_folder.two_pass" in new
    private = [
        name
        for name in new
        if name.split(".")[0] in ("torch", "transformers", "sentence_transformers")
        and any(part.startswith("_") and not part.startswith("__") for part in name.split("."))
    ]
    assert not private, private
