"""The page in a real browser: Debian's chromium, headless, driven by Playwright, against ``moodsong serve``.

The server runs as its own process (the real CLI, uvicorn, worker pool) on a
free loopback port with the shipped song model; the browser types a prompt,
chooses a key, a form, two instruments and a MIDI file to continue, presses
Compose, and waits for the plan (shown above the player), a playable audio
source, the piano roll and the lead-sheet link, on a phone-sized screen. A
second test records from Chromium's fake microphone, so the page's WAV encoder
and the voice upload run for real.
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
import symusic

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
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-c", "from moodsong.cli import main; main()", "serve", "--port", str(port),
           "--results", str(tmp / "results"), "--log-level", "warning"]
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
    page.wait_for_function(
        "() => { const i = document.querySelector('#roll'); return i.complete && i.naturalWidth > 0; }")


def two_bar_midi(path) -> None:
    """A two-bar melody in C (the file the user asks the song to continue)."""
    score = symusic.Score(480)
    track = symusic.Track("Melody", 73, False)
    for i, pitch in enumerate((60, 62, 64, 65, 67, 65, 64, 62)):
        track.notes.append(symusic.Note(i * 480, 480, pitch, 80))
    score.tracks.append(track)
    score.tempos.append(symusic.Tempo(0, 90.0))
    score.dump_midi(str(path))


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
    page.fill("#bars", "8")
    page.fill("#candidates", "1")
    page.fill("#seed", "5")
    page.select_option("#key", "D minor")
    page.fill("#form", "AB")
    page.select_option("#accompaniment", "acoustic grand piano")
    page.click("#compose")  # an accompaniment alone is not enough: the page asks for a melody instrument
    assert "melody instrument" in page.inner_text("#error")
    page.select_option("#melody", "violin")
    assert not page.is_visible("#primer-clear")  # nothing to remove yet
    primer = tmp_path / "idea.mid"
    two_bar_midi(primer)
    page.set_input_files("#primer", str(primer))
    assert page.is_visible("#primer-clear")
    with page.expect_response("**/api/compose/primer") as answer:
        page.click("#compose")
    assert answer.value.status == 202, answer.value.text()
    page.wait_for_selector("#progress:not([hidden])", timeout=10_000)  # the progress indicator shows
    wait_for_piece(page)

    assert page.is_visible("#result") and not page.is_visible("#error")
    explanation = page.inner_text("#explanation")
    assert "quadrant 4" in explanation and "calm" in explanation
    # The plan comes first: key, tempo, form, and the chords bar by bar in rows per section.
    assert page.is_visible("#plan")
    chips = page.locator("#plan-summary .chip").all_inner_texts()
    assert chips[0] == "D minor" and chips[2] == "form A B" and chips[3] == "10 bars"
    assert page.locator(".plan-row").count() == 3  # the primer's two bars, then A and B
    assert page.locator(".plan-letter").all_inner_texts() == ["MIDI", "A", "B"]
    assert page.locator(".plan-bar").count() == 10
    assert all(t.strip() for t in page.locator(".bar-chord").all_inner_texts())
    assert "Violin" in page.inner_text("#plan-instruments")
    assert "heard as the plan" in page.inner_text("#plan-followed")
    plan_box, player_box = page.locator("#plan").bounding_box(), page.locator("#player").bounding_box()
    assert plan_box["y"] + plan_box["height"] <= player_box["y"]
    href = page.get_attribute("#midi-link", "href")
    assert href.endswith("/piece.mid") and page.get_attribute("#midi-link", "download") is not None
    assert page.is_visible("#leadsheet-link")
    assert page.get_attribute("#leadsheet-link", "href").endswith("/piece.musicxml")
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
