"""The page at ``GET /``, in a real browser (headless Chromium driven by Selenium) against a real
`onnxqa serve` process: the answers it highlights are the API's for the same request (offsets in
code points, also after characters outside the BMP), user text is shown as text, keys work, and
the keyboard alone is enough.

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package (the dev extra):
without them the tests skip, and fail under ``CI=true``. ``ONNXQA_SCREENSHOT=1`` writes the
README's screenshot, docs/assets/page.png (with ``ONNXQA_SCREENSHOT_MODEL=DIR``, of that model's
answers: ``pytest tests/test_page.py -k screenshot``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import ROOT, shared_path

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

WAIT = 30  # seconds: the longest wait for the browser or a server
KEY = secrets.token_hex(16)  # 32 characters
SCREENSHOT = ROOT / "docs" / "assets" / "page.png"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed (pip install -e '.[dev]')")
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        _unavailable("no chromium or chromedriver on PATH (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1200,900",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(flag)
    drv = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    try:
        drv.set_page_load_timeout(WAIT)
        drv.set_script_timeout(WAIT)
        drv.set_window_size(1200, 900)
        yield drv
    finally:
        drv.quit()


@dataclass
class Server:
    base: str
    proc: subprocess.Popen[bytes]
    log: Path

    def api(self, path: str, body: dict[str, Any], key: str | None = None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        r = httpx.post(f"{self.base}{path}", json=body, headers=headers, timeout=WAIT)
        assert r.status_code == 200, r.text
        return dict(r.json())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(model: Path, log: Path, *flags: str, env: dict[str, str] | None = None) -> Server:
    port = _free_port()
    environ = {k: v for k, v in os.environ.items() if k != "ONNXQA_API_KEY"}
    environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "onnxqa.cli", "serve", str(model), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--device", "cpu", "--threads", "1", *flags]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env={**environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT)
    return Server(f"http://127.0.0.1:{port}", proc, log)


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + WAIT
    while True:
        assert server.proc.poll() is None, server.log.read_text(errors="replace")[-3000:]
        try:
            if httpx.get(f"{server.base}/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server did not become ready: " + server.log.read_text()[-3000:]
        time.sleep(0.1)


def _stop(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(10)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()


@pytest.fixture(scope="module")
def servers(fake_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    """Two servers started side by side: an open one (at most 4 documents) and one with a key."""
    tmp = tmp_path_factory.mktemp("page")
    # the model's name, as the page shows it; ONNXQA_SCREENSHOT_MODEL (a model directory, e.g. the
    # trained reference model exported) gives the screenshot real answers
    real = os.environ.get("ONNXQA_SCREENSHOT_MODEL")
    source = Path(real) if real else fake_model
    named = shutil.copytree(source, tmp / (source.name if real else "fake-bert-tiny"))
    started = {
        "open": _start(named, tmp / "open.log", "--max-documents", "4"),
        "keyed": _start(fake_model, tmp / "keyed.log", env={"ONNXQA_API_KEY": KEY}),
    }
    try:
        for server in started.values():
            _wait_ready(server)
        yield started
    finally:
        for server in started.values():
            _stop(server)


# helpers on the page ---------------------------------------------------------------------------


def _by(css: str) -> tuple[str, str]:
    return ("css selector", css)


def _open(browser: Any, server: Server) -> None:
    browser.get(f"{server.base}/")
    assert browser.find_element(*_by("#question")).is_displayed()


def _set(element: Any, text: str) -> None:
    """A textarea's value, also with characters chromedriver cannot type (outside the BMP)."""
    element.parent.execute_script(
        "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'))", element, text
    )


def _outcome(browser: Any) -> tuple[str, list[Any]]:
    """Waits until the page shows answers or an error: (the error text, the answer items)."""
    from selenium.webdriver.support.ui import WebDriverWait

    def shown(d: Any) -> tuple[str, list[Any]] | bool:
        error = d.find_element(*_by("#error")).get_property("textContent")
        items = d.find_elements(*_by("#results li.answer"))
        busy = d.find_element(*_by("#results")).get_attribute("aria-busy")
        return (error, items) if (error or items) and not busy else False

    return WebDriverWait(browser, WAIT).until(shown)  # type: ignore[no-any-return]


def _answers_shown(browser: Any) -> list[Any]:
    error, items = _outcome(browser)
    assert not error, error
    return items


def _marks(browser: Any) -> list[dict[str, Any]]:
    return browser.execute_script(  # type: ignore[no-any-return]
        "return [...document.querySelectorAll('mark')].map(m => ({text: m.textContent,"
        " start: +m.dataset.start, end: +m.dataset.end, best: m.classList.contains('best'),"
        " document: m.dataset.document === undefined ? null : +m.dataset.document}))"
    )


def _check_against_api(browser: Any, items: list[Any], api: dict[str, Any], texts: list[str], documents: bool) -> None:
    """The list and the highlights are the API's answers (text, score, offsets into the right text)."""
    assert [li.get_attribute("data-text") for li in items] == [a["text"] for a in api["answers"]]
    assert [float(li.get_attribute("data-score")) for li in items] == [a["score"] for a in api["answers"]]
    marks = _marks(browser)
    best = api["answers"][0]
    best_marks = [m for m in marks if m["best"]]
    assert len(best_marks) == 1
    assert best_marks[0] == {
        "text": best["text"],
        "start": best["start"],
        "end": best["end"],
        "best": True,
        "document": best["document"] if documents else None,
    }
    spans = {(a.get("document"), a["start"], a["end"]) for a in api["answers"]}
    for m in marks:  # every highlight is an answer's span, cut from its own text by code points
        assert (m["document"], m["start"], m["end"]) in spans
        assert m["text"] == texts[m["document"] or 0][m["start"] : m["end"]]
    facts = browser.find_element(*_by("#facts")).text
    assert all(api[k] in facts for k in ("model", "precision", "device")), facts
    assert float(browser.find_element(*_by("#elapsed")).text) >= 0


# the tests --------------------------------------------------------------------------------------

CONTEXT = (
    "The Harlow Bridge 🌉 was designed by Margaret Ellison and opened to traffic in 1931. "
    "It crosses the river Wend 🏞️ in three spans of steel, and it carried trams until 1958."
)
QUESTION = "Who designed the Harlow Bridge?"

DOCUMENTS = [
    "👩‍🔬 Margaret Ellison 🎓 studied engineering in Glasgow before moving to Harlow, where she worked "
    "for the county council and later designed the town's bridge over the river Wend.",
    "🚋 Trams crossed the bridge from its opening in 1931 until 1958, when buses replaced them.",
    "𝓗arlow 🏙️ is a market town whose population doubled between 1900 and 1950 as the railway arrived.",
]


def test_one_text_answers_are_the_apis(browser, servers):
    server = servers["open"]
    _open(browser, server)
    assert not browser.find_element(*_by("#api-key")).is_displayed()
    browser.find_element(*_by("#question")).send_keys(QUESTION)
    _set(browser.find_element(*_by("#context")), CONTEXT)
    browser.find_element(*_by("#submit")).click()
    items = _answers_shown(browser)
    api = server.api("/v1/answer", {"question": QUESTION, "context": CONTEXT, "top_k": 3})
    _check_against_api(browser, items, api, [CONTEXT], documents=False)
    assert api["model"] == "fake-bert-tiny"

    # "allow no answer" and another top_k: the same request again
    top_k = browser.find_element(*_by("#top-k"))
    top_k.clear()
    top_k.send_keys("5")
    browser.find_element(*_by("#no-answer")).click()
    browser.find_element(*_by("#submit")).click()
    items = _answers_shown(browser)
    body = {"question": QUESTION, "context": CONTEXT, "top_k": 5, "handle_impossible_answer": True}
    _check_against_api(browser, items, server.api("/v1/answer", body), [CONTEXT], documents=False)


def test_documents_answers_are_the_apis_after_emoji(browser, servers):
    server = servers["open"]
    _open(browser, server)
    browser.find_element(*_by("#mode-documents")).click()
    assert not browser.find_element(*_by("#context")).is_displayed()
    add = browser.find_element(*_by("#add-document"))
    add.click()
    areas = browser.find_elements(*_by("#documents textarea"))
    assert len(areas) == 3
    for area, text in zip(areas, DOCUMENTS):
        _set(area, text)
    question = "Where did Margaret Ellison study engineering?"
    browser.find_element(*_by("#question")).send_keys(question)
    browser.find_element(*_by("#submit")).click()
    items = _answers_shown(browser)
    body = {"question": question, "documents": DOCUMENTS, "top_k": 3, "no_answer": False}
    api = server.api("/v1/answer/documents", body)
    best = api["answers"][0]
    # the check means something: characters outside the BMP come before the best answer
    assert any(ord(c) > 0xFFFF for c in DOCUMENTS[best["document"]][: best["start"]])
    _check_against_api(browser, items, api, DOCUMENTS, documents=True)
    assert [li.get_attribute("data-document") for li in items] == [str(a["document"]) for a in api["answers"]]
    # "allow no answer": the no-answer entry is listed, without a highlight
    browser.find_element(*_by("#no-answer")).click()
    browser.find_element(*_by("#submit")).click()
    items = _answers_shown(browser)
    api = server.api("/v1/answer/documents", {**body, "no_answer": True})
    assert any(a["is_impossible"] for a in api["answers"])
    _check_against_api(browser, items, api, DOCUMENTS, documents=True)
    impossible = [li for li, a in zip(items, api["answers"]) if a["is_impossible"]]
    assert all("no answer" in li.text for li in impossible)
    # at most max_documents (4 on this server)
    add.click()
    assert len(browser.find_elements(*_by("#documents textarea"))) == 4
    assert not add.is_enabled()


def test_api_key_field(browser, servers):
    server = servers["keyed"]
    _open(browser, server)
    key = browser.find_element(*_by("#api-key"))
    assert key.is_displayed() and key.get_attribute("type") == "password"
    browser.find_element(*_by("#question")).send_keys(QUESTION)
    _set(browser.find_element(*_by("#context")), CONTEXT)
    browser.find_element(*_by("#submit")).click()
    error, items = _outcome(browser)
    assert "401" in error and "API key" in error and not items
    assert browser.switch_to.active_element == key  # focus goes where the fix is
    key.send_keys(KEY)
    browser.find_element(*_by("#submit")).click()
    items = _answers_shown(browser)
    api = server.api("/v1/answer", {"question": QUESTION, "context": CONTEXT, "top_k": 3}, key=KEY)
    _check_against_api(browser, items, api, [CONTEXT], documents=False)
    # the key is never in the address nor stored by the page
    stored = browser.execute_script("return JSON.stringify([{...localStorage}, {...sessionStorage}])")
    assert KEY not in browser.current_url and KEY not in stored


def test_markup_in_the_text_is_shown_as_text(browser, servers):
    server = servers["open"]
    _open(browser, server)
    context = (
        'The note read <img src=x onerror="window.hacked=1"> and then <script>window.hacked=2</script> '
        "<b>Margaret Ellison</b> designed the bridge in 1931."
    )
    browser.find_element(*_by("#question")).send_keys(QUESTION)
    _set(browser.find_element(*_by("#context")), context)
    browser.find_element(*_by("#submit")).click()
    _answers_shown(browser)
    assert browser.find_elements(*_by("img")) == []
    assert browser.find_elements(*_by("#passages b, #passages script, #results b")) == []
    assert browser.execute_script("return window.hacked") is None
    assert browser.find_element(*_by("#passages .passage")).get_property("textContent") == context


def test_keyboard_alone_is_enough(browser, servers):
    from selenium.webdriver.common.keys import Keys

    server = servers["open"]
    _open(browser, server)
    _set(browser.find_element(*_by("#context")), CONTEXT)
    question = browser.find_element(*_by("#question"))
    question.send_keys(QUESTION)
    question.send_keys(Keys.ENTER)  # Enter in the question submits
    items = _answers_shown(browser)
    api = server.api("/v1/answer", {"question": QUESTION, "context": CONTEXT, "top_k": 3})
    assert items[0].get_attribute("data-text") == api["answers"][0]["text"]
    # Tab reaches the mode switch, the arrow keys change it, Enter adds a document
    question.send_keys(Keys.TAB)
    active = browser.switch_to.active_element
    assert active.get_attribute("id") == "mode-text"
    active.send_keys(Keys.ARROW_RIGHT)
    assert browser.find_element(*_by("#mode-documents")).is_selected()
    assert browser.find_element(*_by("#documents textarea")).is_displayed()
    browser.execute_script("document.getElementById('add-document').focus()")
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    areas = browser.find_elements(*_by("#documents textarea"))
    assert len(areas) == 3 and browser.switch_to.active_element == areas[-1]  # the new one, to type in


def test_screenshot_of_a_documents_answer(browser, servers):
    """SQuAD's passages about the Normans; written to docs/assets/page.png with ONNXQA_SCREENSHOT=1."""
    data = json.loads(shared_path("data", "squad", "dev-v2.0.json").read_text(encoding="utf-8"))
    paragraphs = data["data"][0]["paragraphs"]
    documents = [paragraphs[2]["context"], paragraphs[0]["context"]]
    question = "In what country is Normandy located?"
    server = servers["open"]
    _open(browser, server)
    browser.find_element(*_by("#mode-documents")).click()
    for area, text in zip(browser.find_elements(*_by("#documents textarea")), documents):
        _set(area, text)
    browser.find_element(*_by("#question")).send_keys(question)
    browser.find_element(*_by("#submit")).click()
    items = _answers_shown(browser)
    body = {"question": question, "documents": documents, "top_k": 3, "no_answer": False}
    api = server.api("/v1/answer/documents", body)
    _check_against_api(browser, items, api, documents, documents=True)
    if os.environ.get("ONNXQA_SCREENSHOT"):
        browser.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")
        # a 1200x900 viewport (headless Chromium's window keeps some of its height for a toolbar)
        metrics = {"width": 1200, "height": 900, "deviceScaleFactor": 1, "mobile": False}
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        try:
            assert browser.save_screenshot(str(SCREENSHOT))
        finally:
            browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _glyphs_missing(browser: Any, text: str) -> bool:
    """Whether the page's font draws ``text`` as the box of a character no font has (U+10FFFD):
    the same advance for every character of it means no font on this machine covers the script."""
    return bool(
        browser.execute_script(
            "const c = document.createElement('canvas').getContext('2d');"
            "c.font = getComputedStyle(document.querySelector('.passage')).font;"
            "const box = c.measureText('\\u{10FFFD}').width;"
            "return [...arguments[0]].every(ch => Math.abs(c.measureText(ch).width - box) < 0.01);",
            text,
        )
    )


def test_right_to_left_and_cjk_text(browser, servers):
    """Arabic runs right to left in the question, the passages and the answers; Chinese and Hindi
    are drawn with real glyphs (Debian's fonts, installed with the browser); highlights are the
    API's spans, cut by code points. ONNXQA_SCREENSHOT=1 writes docs/assets/page-languages.png."""
    from multilingual import PAIRS

    documents = [PAIRS[3][1], PAIRS[0][1], PAIRS[4][1]]  # Arabic, Chinese, Hindi
    question = PAIRS[3][0]
    server = servers["open"]
    _open(browser, server)
    browser.find_element(*_by("#mode-documents")).click()
    browser.find_element(*_by("#add-document")).click()
    for area, text in zip(browser.find_elements(*_by("#documents textarea")), documents):
        _set(area, text)
    _set(browser.find_element(*_by("#question")), question)
    browser.find_element(*_by("#submit")).click()
    items = _answers_shown(browser)
    body = {"question": question, "documents": documents, "top_k": 3, "no_answer": False}
    api = server.api("/v1/answer/documents", body)
    _check_against_api(browser, items, api, documents, documents=True)

    def direction(css: str) -> list[str]:
        return browser.execute_script(  # type: ignore[no-any-return]
            "return [...document.querySelectorAll(arguments[0])].map(e => getComputedStyle(e).direction)", css
        )

    assert direction("#question") == ["rtl"]
    assert direction("#documents textarea") == ["rtl", "ltr", "ltr"]
    assert direction(".passage") == ["rtl", "ltr", "ltr"]
    arabic = [a["document"] == 0 for a in api["answers"] if not a["is_impossible"]]
    assert direction("#answers q") == ["rtl" if is_arabic else "ltr" for is_arabic in arabic]
    for script, text in (("Chinese", documents[1]), ("Arabic", documents[0]), ("Devanagari", documents[2])):
        if _glyphs_missing(browser, text[:6]):
            _unavailable(f"no font draws {script} here (Debian: fonts-wqy-microhei, fonts-noto-core)")
    if os.environ.get("ONNXQA_SCREENSHOT"):
        browser.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")
        metrics = {"width": 1200, "height": 1100, "deviceScaleFactor": 1, "mobile": False}
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        try:
            assert browser.save_screenshot(str(SCREENSHOT.with_name("page-languages.png")))
        finally:
            browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
