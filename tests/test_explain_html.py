"""``grace explain --html``: a self-contained page, every text escaped, that a real browser renders as intended."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from grace_st import explain_match
from grace_st.cli import main
from grace_st.explain_html import render_html


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HOSTILE = 'A cat <script>document.body.setAttribute("data-pwned", "1")</script> sat & "mat" <b>bold</b>'


@pytest.fixture
def model(build_tiny):
    return build_tiny(max_input_tokens=256)  # the tiny tokenizer splits HOSTILE into many tokens; keep all of them


@pytest.fixture
def explanations(model):
    return explain_match(model, "where is the <i>cat</i>?", ["A cat sat on the mat.", HOSTILE])


def test_every_text_is_escaped(explanations):
    page = render_html(explanations)
    assert "<script" not in page and "<b>" not in page and "<i>" not in page
    assert "&lt;script&gt;document.body.setAttribute(&quot;data-pwned&quot;" in page
    assert "&lt;i&gt;cat&lt;/i&gt;" in page
    assert page.count('class="tok"') == sum(len(e.contributions) for e in explanations)


def _dump_dom(page: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    argv = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        *extra,
        page.as_uri(),
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="headless Chromium is not installed (`make setup` installs Debian's chromium; or apt-get install chromium)",
)
def test_page_renders_in_headless_chromium(model, tmp_path, capsys):
    from grace_st import save_grace_model

    folder = save_grace_model(model, tmp_path / "model")
    page = tmp_path / "explain.html"
    argv = ["explain", str(folder), "--query", "where is the cat?", "--document", "A cat sat.", "--document", HOSTILE]
    assert main([*argv, "--html", str(page), "--top-k", "4"]) == 0
    captured = capsys.readouterr()
    assert f"wrote the explanation page to {page}" in captured.err

    result = _dump_dom(page, tmp_path, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert "data-pwned" not in re.sub(r"&lt;script&gt;.*?&lt;/script&gt;", "", dom), "the <script> text ran"
    assert "<script" not in dom and "&lt;script&gt;" in dom, "the <script> text is shown as text"
    assert dom.count('<section class="pair">') == 2
    scores = re.findall(r'<span class="score">([0-9.]+)</span>', dom)
    assert len(scores) == 2 and all(0 < float(s) <= 1 for s in scores)
    token_spans = re.findall(r'<span class="tok" data-source="([a-z_]+)" data-value="([-0-9.e]+)"', dom)
    assert {source for source, _ in token_spans} == {
        "query_text",
        "query_rationale",
        "template",
        "document_text",
        "document_rationale",
    }
    assert len(re.findall(r"<tr><td><code>", dom)) == 2 * 4, "a top-4 table per document"
