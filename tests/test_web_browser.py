"""The page in a real browser: Debian's chromium, headless, driven by Playwright, against ``moodsong serve``.

The server runs as its own process (the real CLI, uvicorn, worker pool) on a
free loopback port with a small conditional RBM made here; the browser types a
prompt, presses Compose, and waits for a playable audio source and the piano
roll, on a phone-sized screen. A second test records from Chromium's fake
microphone, so the page's WAV encoder and the voice upload run for real.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

import httpx
import pytest
import torch

from moodsong.models.conditional_rbm import ConditionalRBM, ConditionalRBMConfig

pytestmark = pytest.mark.slow
sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
FAKE_MIC = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
PHONE = {"width": 390, "height": 844}

if not os.path.exists(CHROMIUM):
    pytest.skip("chromium is not installed (Debian: apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``moodsong serve`` on a free port; yields its base URL."""
    tmp = tmp_path_factory.mktemp("browser")
    model = ConditionalRBM(ConditionalRBMConfig(num_hidden=16))
    with torch.no_grad():
        model.b_visible.fill_(-3.5)
        model.W.normal_(0, 0.05, generator=torch.Generator().manual_seed(0))
    model.save(tmp / "crbm")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-c", "from moodsong.cli import main; main()", "serve", "--port", str(port),
           "--model", str(tmp / "crbm"), "--results", str(tmp / "results"), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(tmp / "server.log", "wb"))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(base + "/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("server did not start:\n" + (tmp / "server.log").read_text(errors="replace"))
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def open_page(server):
    """Yields ``open(extra_flags) -> (page, console_errors)``; closes the browser after the test."""
    with sync_api.sync_playwright() as pw:
        browsers = []

        def open_(extra=()):
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS + list(extra), headless=True)
            browsers.append(browser)
            page = browser.new_page(viewport=PHONE, device_scale_factor=1)
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server + "/")
            return page, errors

        yield open_
        for b in browsers:
            b.close()


def wait_for_piece(page, timeout_ms: int = 180_000) -> None:
    page.wait_for_function(
        "() => { const a = document.querySelector('#player');"
        " return a.currentSrc && a.readyState >= 1 && isFinite(a.duration) && a.duration > 0; }",
        timeout=timeout_ms,
    )
    page.wait_for_function("() => { const i = document.querySelector('#roll'); return i.complete && i.naturalWidth > 0; }")


def test_type_a_feeling_and_get_a_piece(open_page, tmp_path):
    page, errors = open_page()
    assert page.title() == "moodsong"
    # The mood pad answers to a tap (top-left: unpleasant and excited).
    page.click("label:has(input[value=pad])")
    box = page.locator("#pad").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.1, box["y"] + box["height"] * 0.1)
    assert page.inner_text("#pad-readout").startswith("valence -0.8")
    page.click("label:has(input[value=words])")

    page.fill("#prompt", "a calm and peaceful evening by the sea")
    page.click("#settings summary")
    page.fill("#bars", "2")
    page.fill("#candidates", "1")
    page.fill("#seed", "5")
    page.click("#compose")
    page.wait_for_selector("#progress:not([hidden])", timeout=10_000)  # the progress indicator shows
    wait_for_piece(page)

    assert page.is_visible("#result")
    explanation = page.inner_text("#explanation")
    assert "quadrant 4" in explanation and "calm" in explanation
    assert len(page.inner_text("#chords").split("|")) == 2
    href = page.get_attribute("#midi-link", "href")
    assert href.endswith("/piece.mid") and page.get_attribute("#midi-link", "download") is not None
    # Phone-sized screen: nothing sticks out sideways.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot = tmp_path / "moodsong-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    assert not errors, errors  # no script errors, no blocked (off-site) assets


def test_record_from_the_microphone_and_upload(open_page):
    page, errors = open_page(FAKE_MIC)
    page.click("label:has(input[value=voice])")
    page.click("#settings summary")
    page.fill("#bars", "2")
    page.fill("#candidates", "1")
    page.click("#record")
    page.wait_for_function("() => document.querySelector('#rec-status').textContent.includes('1 s')", timeout=15_000)
    page.click("#record")  # stop
    assert page.get_attribute("#rec-preview", "src").startswith("blob:")
    with page.expect_response("**/api/compose/voice") as answer:
        page.click("#compose")
    # The server took the page's WAV: right magic bytes, readable by libsndfile, under 30 s.
    assert answer.value.status == 202, answer.value.text()
    # The fake microphone plays beeps, not words: a neutral piece or a clear message, both are fine.
    page.wait_for_function(
        "() => !document.querySelector('#result').hidden || !document.querySelector('#error').hidden",
        timeout=180_000,
    )
    if page.is_visible("#error"):
        assert "speech" in page.inner_text("#error")
    else:
        wait_for_piece(page)
        assert "Heard" in page.inner_text("#explanation")
    assert not errors, errors
