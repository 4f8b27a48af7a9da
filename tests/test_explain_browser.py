"""The cohort page and a patient page in headless Chromium: no console errors, every image decodes, not blank.

Needs Debian's `chromium` and `playwright` from PyPI; skipped when either is missing, except under CI=true.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

sys.path.insert(0, str(Path(__file__).parent))
from test_explain import make_cohort, make_model_dir, write_images  # noqa: E402

from radpipe.explain import ExplainSettings, explain  # noqa: E402

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def _need(condition: bool, message: str) -> None:
    if not condition:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def browser():
    _need(Path(CHROMIUM).exists() or shutil.which("chromium") is not None,
          "Debian chromium is not installed (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need(False, "playwright is not installed (pip install playwright)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
                              args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    X, y = make_cohort(n=30)
    X = X.rename(index={"case_001": "case <1> & 'quoted'"})
    y = y.rename(index={"case_001": "case <1> & 'quoted'"})
    tmp = tmp_path_factory.mktemp("browser")
    model_dir = make_model_dir(tmp, RandomForestClassifier(n_estimators=20, random_state=0), X, y, folds=2)
    images = write_images(tmp, [X.index[0], X.index[1]])
    settings = ExplainSettings(lime_samples=100, shap_background=10, bootstrap=50, stability_cases=10)
    result = explain(model_dir, X, tmp / "out", labels=y, images=images, settings=settings,
                     patients=[X.index[0], X.index[1], X.index[2]])
    return result, X


def test_patient_page_prints_on_at_most_two_a4_pages(browser, pages, tmp_path):
    result, X = pages
    page = browser.new_page()
    page.goto(result.patient_pages[X.index[0]].as_uri(), wait_until="load")
    pdf = page.pdf(prefer_css_page_size=True)
    page.close()
    n_pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf))
    assert 1 <= n_pages <= 2, n_pages
    box = re.search(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)", pdf)
    assert box and abs(float(box.group(1)) - 595) < 2 and abs(float(box.group(2)) - 842) < 2  # A4 in points


def _check(browser, page_path: Path, shot: Path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(page_path.as_uri(), wait_until="load")
    assert errors == []
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
    widths = page.eval_on_selector_all("img", "els => els.map(e => e.complete ? e.naturalWidth : 0)")
    assert widths and min(widths) > 0
    alts = page.eval_on_selector_all("img", "els => els.map(e => (e.getAttribute('alt') || '').trim())")
    assert all(alts), "every figure needs alt text"
    captions = page.eval_on_selector_all("figure", "els => els.map(e => !!e.querySelector('figcaption'))")
    assert all(captions), "every figure needs a caption"
    text = page.inner_text("body")
    assert not re.search(r"\bnan\b|\bNone\b|\d[eE][+-]\d\d\b", text), "raw nan/None/exponent text on the page"
    page.screenshot(path=str(shot), full_page=True)
    page.close()
    import matplotlib.image as mpimg

    pixels = mpimg.imread(io.BytesIO(shot.read_bytes()), format="png")
    assert np.asarray(pixels)[..., :3].std() > 0.05  # not a blank page


def test_cohort_page_renders(browser, pages, tmp_path):
    result, _ = pages
    _check(browser, result.cohort_page, tmp_path / "cohort.png")


def test_patient_page_renders_and_sorting_works(browser, pages, tmp_path):
    result, X = pages
    _check(browser, result.patient_pages[X.index[1]], tmp_path / "patient.png")
    page = browser.new_page()
    page.goto(result.cohort_page.as_uri())
    page.click("#patients-table th:nth-child(2)")
    page.click("#patients-table th:nth-child(2)")  # descending
    probs = page.eval_on_selector_all("#patients-table tbody td:nth-child(2)", "els => els.map(e => +e.dataset.value)")
    assert probs == sorted(probs, reverse=True)
    page.click("#patients-table a >> nth=0")
    assert "Patient" in page.title()
    page.close()
