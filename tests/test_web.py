"""The web server: API behaviour with FastAPI's test client (good and bad input, caps, IDs, limits, concurrency).

Composition runs for real (worker processes, MIDI + audio + PNG), on a small
conditional RBM made here so the tests do not depend on the shipped model's
training and stay quick (2 bars, 1 candidate).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import symusic
from click.testing import CliRunner
from fastapi.testclient import TestClient

from moodsong.cli import main
from moodsong.web import create_app
from moodsong.web.app import RateLimiter
from moodsong.web.jobs import LOCK_NAME, JobStore, new_id, valid_id

STATIC = Path(__file__).resolve().parents[1] / "src" / "moodsong" / "web" / "static"
QUICK = {"bars": 2, "candidates": 1}


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("web") / "results"


@pytest.fixture(scope="module")
def client(tiny_model, results_dir):
    app = create_app(results_dir=results_dir, workers=1, rate_limit=0, model=tiny_model)
    with local(app) as c:
        yield c


def local(app) -> TestClient:
    """A test client that talks to the app as ``http://localhost`` (a Host the server answers to)."""
    return TestClient(app, base_url="http://localhost")


def wait_done(client: TestClient, url: str, timeout_s: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = client.get(url)
        assert r.status_code == 200, r.text
        job = r.json()
        if job["status"] in ("done", "failed"):
            return job
        assert job["status"] in ("queued", "running")
        time.sleep(0.2)
    raise AssertionError(f"{url} did not finish")


def header_rate_wav(rate: int, frames: int = 16000) -> bytes:
    """A mono 16-bit WAV of ``frames`` samples whose header claims ``rate`` Hz (libsndfile will not write such)."""
    import struct

    data = (np.sin(np.arange(frames) / 5.0) * 3000).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2 % 2**32, 2, 16)
    return (b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE"
            + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data)


def wav_bytes(seconds: float = 0.5, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    t = np.arange(int(seconds * rate)) / rate
    sf.write(buf, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


# -- page and schema -------------------------------------------------------------------


def test_page_schema_and_headers(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    for needle in ('id="prompt"', 'id="record"', 'id="pad"', 'id="player"', 'id="roll"', 'id="midi-link"',
                   'id="progress"', 'name="viewport"', 'id="key"', 'id="form"', 'id="melody"', 'id="accompaniment"',
                   'id="primer"', 'id="plan"', 'id="leadsheet-link"'):
        assert needle in r.text
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'self'" in r.headers["content-security-policy"]
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    # Offline: nothing on the page is fetched from another host.
    for f in STATIC.iterdir():
        text = f.read_text(encoding="utf-8")
        assert not re.search(r"""["'(=]\s*(https?:)?//""", text), f.name
    schema = client.get("/openapi.json").json()
    for path in ("/api/compose", "/api/compose/voice", "/api/compose/primer", "/api/results/{job_id}",
                 "/api/results/{job_id}/{name}"):
        assert path in schema["paths"]
    body = schema["components"]["schemas"]["ComposeBody"]["properties"]
    assert '"maxLength": 500' in json.dumps(body["prompt"]) and body["bars"]["maximum"] == 32
    assert body["bars"]["default"] == 16 and {"key", "form", "instrument"} <= set(body)
    assert client.get("/docs").status_code == 404  # the CDN-based docs page is off


# -- composing ---------------------------------------------------------------------------


def test_compose_prompt_gives_midi_audio_picture_chords(client, results_dir):
    r = client.post("/api/compose", json={"prompt": "a song of hope and wonder", "tempo": 90, "instrument": 40,
                                          "temperature": 1.2, "seed": 3, **QUICK})
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert valid_id(accepted["id"]) and accepted["status_url"] == f"/api/results/{accepted['id']}"
    job = wait_done(client, accepted["status_url"])
    assert job["status"] == "done", job
    res = job["result"]
    assert res["source"] == "prompt" and res["target"]["quadrant"] == 1
    assert "hope" in res["explanation"]
    assert len(res["chords"]) == 2 and res["key"] and res["tempo_qpm"] == 90
    assert res["instrument"]["program"] == 40
    assert "ignored" not in res  # temperature reaches the composer
    assert str(results_dir) not in json.dumps(res)  # server paths never leak

    midi = client.get(res["files"]["midi"])
    assert midi.status_code == 200 and midi.headers["content-type"] == "audio/midi"
    assert "attachment" in midi.headers["content-disposition"]
    score = symusic.Score.from_midi(midi.content)
    assert score.tempos[0].qpm == pytest.approx(90, abs=0.5)
    assert all(t.program == 40 for t in score.tracks) and sum(len(t.notes) for t in score.tracks) > 0

    audio = client.get(res["files"]["audio"])
    assert audio.headers["content-type"] == "audio/wav"
    samples, rate = sf.read(io.BytesIO(audio.content))
    assert rate > 0 and len(samples) / rate >= res["duration_s"] and np.abs(samples).max() > 0.01

    png = client.get(res["files"]["png"])
    assert png.headers["content-type"] == "image/png" and png.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_concurrent_requests_all_finish_and_seed_reproduces(client):
    bodies = [{"quadrant": 3, "seed": 7, **QUICK}, {"quadrant": 3, "seed": 7, **QUICK},
              {"valence": 0.4, "arousal": -0.6, **QUICK}, {"quadrant": 2, **QUICK}]
    with ThreadPoolExecutor(len(bodies)) as ex:
        accepted = list(ex.map(lambda b: client.post("/api/compose", json=b), bodies))
    assert [r.status_code for r in accepted] == [202] * len(bodies)
    ids = [r.json()["id"] for r in accepted]
    assert len(set(ids)) == len(ids)
    # The server answers while the worker is busy.
    assert client.get("/api/health").json()["workers"] == 1
    with ThreadPoolExecutor(len(bodies)) as ex:
        jobs = list(ex.map(lambda r: wait_done(client, r.json()["status_url"]), accepted))
    assert [j["status"] for j in jobs] == ["done"] * len(bodies)
    assert jobs[2]["result"]["source"] == "coordinates" and jobs[2]["result"]["target"]["quadrant"] == 4
    a, b = (client.get(j["result"]["files"]["midi"]).content for j in jobs[:2])
    assert a == b  # same request and seed, same piece


def test_voice_upload_is_transcribed(client, tmp_path):
    espeak = shutil.which("espeak-ng")
    if espeak is not None:  # real speech: the spoken feeling must steer the piece
        wav = tmp_path / "request.wav"
        subprocess.run([espeak, "-v", "en-us+m3", "-s", "130", "-w", str(wav), "play something sad and slow"],
                       check=True, capture_output=True)
        data = wav.read_bytes()
    else:
        data = wav_bytes()
    r = client.post("/api/compose/voice", files={"voice": ("me.wav", data, "audio/wav")},
                    data={"bars": "2", "candidates": "1", "seed": "1"})
    assert r.status_code == 202, r.text
    job = wait_done(client, r.json()["status_url"])
    if espeak is not None:
        assert job["status"] == "done", job
        res = job["result"]
        assert res["source"] == "voice" and "sad" in res["transcript"] and res["target"]["quadrant"] == 3
    elif job["status"] == "done":  # a tone carries no words: a neutral piece or a clear message, never a crash
        assert job["result"]["source"] == "voice"
    else:
        assert "speech" in job["error"]
    job_dir = client.app.state.results_dir / r.json()["id"]
    assert job_dir.is_dir() and not list(job_dir.glob("voice.*"))  # the recording is deleted once heard


# -- bad input: 4xx with one clear message ----------------------------------------------------


@pytest.mark.parametrize(
    "body, status, fragment",
    [
        ({}, 422, "exactly one of"),
        ({"prompt": "happy", "quadrant": 1}, 422, "exactly one of"),
        ({"prompt": "x" * 501}, 422, "at most 500"),
        ({"prompt": "   "}, 422, "empty"),
        ({"valence": 1.5}, 422, "valence"),
        ({"valence": "NaN"}, 422, "valence"),
        ({"quadrant": 5}, 422, "quadrant"),
        ({"quadrant": 1, "bars": 0}, 422, "bars"),
        ({"quadrant": 1, "bars": 33}, 422, "bars"),
        ({"quadrant": 1, "tempo": 1000}, 422, "tempo"),
        ({"quadrant": 1, "instrument": 128}, 422, "instrument"),
        ({"quadrant": 1, "candidates": 100}, 422, "candidates"),
        ({"quadrant": 1, "seed": -1}, 422, "seed"),
        ({"quadrant": 1, "voice": "../../etc/passwd"}, 422, "not permitted"),
        ({"quadrant": 1, "out_dir": "/tmp"}, 422, "not permitted"),
        ([1, 2], 422, "valid dictionary"),
        # Strict types: nothing is converted.
        ({"quadrant": 1, "bars": True}, 422, "bars: Input should be a valid integer"),
        ({"quadrant": 1, "bars": "4"}, 422, "bars: Input should be a valid integer"),
        ({"quadrant": 1, "bars": 4.0}, 422, "bars"),
        ({"quadrant": True}, 422, "quadrant"),
        ({"quadrant": "1"}, 422, "quadrant"),
        ({"valence": "0.5"}, 422, "valence"),
        ({"prompt": 5}, 422, "prompt"),
        ({"quadrant": 1, "seed": False}, 422, "seed"),
    ],
)
def test_bad_json_requests(client, body, status, fragment):
    r = client.post("/api/compose", json=body)
    assert r.status_code == status
    detail = r.json()["detail"]
    assert isinstance(detail, str) and fragment in detail and "Traceback" not in detail


def test_malformed_and_oversized_bodies(client):
    r = client.post("/api/compose", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.json()["detail"]
    r = client.post("/api/compose", json={"prompt": "sad " * 10000})
    assert r.status_code == 413 and "too large" in r.json()["detail"]
    r = client.post("/api/compose", content=b"x", headers={"content-type": "application/json", "content-length": "abc"})
    assert r.status_code == 400
    # A wrong content type is 415, before the body is read.
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""):
        r = client.post("/api/compose", content=b'{"quadrant": 1}', headers={"content-type": ctype})
        assert r.status_code == 415 and "application/json" in r.json()["detail"], ctype
    r = client.post("/api/compose/voice", data={"bars": "2"})  # url-encoded: no room for a recording
    assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"]
    assert client.get("/api/compose").status_code == 405


def test_bad_voice_uploads(client):
    def post(data: bytes, **form):
        return client.post("/api/compose/voice", files={"voice": ("v.wav", data, "audio/wav")}, data=form)

    assert post(b"ID3\x03 not audio").status_code == 415
    assert post(b"<html>hello</html>").status_code == 415
    r = post(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    assert r.status_code == 422 and "could not be read" in r.json()["detail"]
    r = post(wav_bytes(seconds=31, rate=8000))
    assert r.status_code == 422 and "30 s" in r.json()["detail"]
    for rate in (1_000_003, 100_000_007, 4000):  # a hostile header: tiny file, huge resampling filter
        r = post(header_rate_wav(rate))
        assert r.status_code == 422 and "sample rate" in r.json()["detail"], rate
    r = post(wav_bytes(), mood="happy")  # the form refuses unknown fields like the JSON body does
    assert r.status_code == 422 and "mood: Extra inputs are not permitted" in r.json()["detail"]
    r = client.post("/api/compose/voice", files=[("voice", ("v.wav", wav_bytes(), "audio/wav")), ("bars", (None, "2")),
                                                 ("bars", (None, "3"))])
    assert r.status_code == 422 and "more than once" in r.json()["detail"]
    for bad in ("true", "4.5", "0x4", "1e1"):  # (an empty field means "not given", as in HTML forms)
        r = post(wav_bytes(), bars=bad)
        assert r.status_code == 422 and "bars" in r.json()["detail"], bad
    r = post(b"RIFF" + b"\x00" * (5 * 1024 * 1024))
    assert r.status_code == 413
    r = post(wav_bytes(), bars="99")
    assert r.status_code == 422 and "bars" in r.json()["detail"]
    r = client.post("/api/compose/voice", files={"bars": (None, "2")})  # multipart, but no recording
    assert r.status_code == 422 and "voice" in r.json()["detail"]


# -- the song model's settings: key, form, instruments, a primer to continue, the lead sheet -------------


def primer_midi(bars: int = 2, qpm: float | None = 100.0, drums: bool = False) -> bytes:
    """A one-track MIDI file of ``bars`` 4/4 bars of quarter notes (a melody the composer can continue)."""
    score = symusic.Score(480)
    track = symusic.Track("Melody", 0, drums)
    for i in range(bars * 4):
        track.notes.append(symusic.Note(i * 480, 480, (60, 62, 64, 65, 67, 65, 64, 62)[i % 8], 80))
    score.tracks.append(track)
    if qpm is not None:
        score.tempos.append(symusic.Tempo(0, qpm))
    return score.dumps_midi()


@pytest.fixture
def recorded(tmp_path):
    """An app on the song model whose pool only records what it is given (no worker process).

    Yields ``(client, calls)``; each call is ``(params, files in the job folder when it ran)``. The
    fake composer writes the files of a song, so results and downloads can be checked too.
    """
    app = create_app(results_dir=tmp_path / "results", rate_limit=0, warm_start=False)
    calls = []

    async def run(job_dir, params, on_start=None):
        calls.append((dict(params), sorted(p.name for p in Path(job_dir).iterdir())))
        for name in ("piece.mid", "piece.wav", "piece.png"):
            (Path(job_dir) / name).write_bytes(b"x")
        (Path(job_dir) / "piece.musicxml").write_text('<?xml version="1.0"?><score-partwise/>')
        return {"ok": True, "result": {"plan": {"key": params.get("key") or "C major", "bar_chords": ["C"]}}}

    app.state.pool.run = run
    with local(app) as c:
        yield c, calls


def test_song_settings_and_primer_reach_the_composer(recorded):
    client, calls = recorded
    r = client.post("/api/compose", json={"quadrant": 2, "key": "D minor", "form": "A A' B A", "bars": 16,
                                          "instrument": "flute,acoustic grand piano", "tempo": 90})
    assert r.status_code == 202, r.text
    job = wait_done(client, r.json()["status_url"])
    assert job["status"] == "done" and job["result"]["plan"]["key"] == "D minor"
    params, _ = calls[-1]
    assert (params["key"], params["form"], params["instrument"], params["tempo"]) == (
        "D minor", "A A' B A", "flute,acoustic grand piano", 90)
    # A program number is still accepted (as before), and the default length is 16 bars.
    assert client.post("/api/compose", json={"quadrant": 1, "instrument": 40}).status_code == 202
    assert calls[-1][0]["instrument"] == "40" and calls[-1][0]["bars"] == 16

    # The lead sheet is listed and served as MusicXML, for download.
    files = job["result"]["files"]
    assert files["musicxml"].endswith("/piece.musicxml")
    sheet = client.get(files["musicxml"])
    assert sheet.status_code == 200 and "score-partwise" in sheet.text
    assert sheet.headers["content-type"] == "application/vnd.recordare.musicxml+xml"
    assert "attachment" in sheet.headers["content-disposition"]

    # A primer upload: saved under a fixed name for the composer, its bars counted, deleted afterwards.
    r = client.post("/api/compose/primer", files={"primer": ("../../my idea.mid", primer_midi(3), "audio/midi")},
                    data={"prompt": "keep it going, but sadder", "key": "E minor", "form": "AB", "bars": "8",
                          "instrument": "violin,cello", "seed": "4"})
    assert r.status_code == 202, r.text
    job = wait_done(client, r.json()["status_url"])
    params, seen = calls[-1]
    assert seen == ["primer.mid"] and params["primer"] == "primer.mid" and params["primer_bars"] == 3
    assert (params["prompt"], params["key"], params["form"], params["bars"], params["instrument"], params["seed"]) == (
        "keep it going, but sadder", "E minor", "AB", 8, "violin,cello", 4)
    job_dir = client.app.state.results_dir / r.json()["id"]
    assert not (job_dir / "primer.mid").exists()  # the upload is not kept once used
    # The mood pad and a quadrant go through the same form, and so does a recording with a primer.
    r = client.post("/api/compose/primer", files={"primer": ("p.mid", primer_midi(), "audio/midi")},
                    data={"valence": "-0.5", "arousal": "0.25"})
    assert r.status_code == 202 and calls and wait_done(client, r.json()["status_url"])["status"] == "done"
    assert (calls[-1][0]["valence"], calls[-1][0]["arousal"]) == (-0.5, 0.25)
    r = client.post("/api/compose/voice", files={"voice": ("v.wav", wav_bytes(), "audio/wav"),
                                                 "primer": ("p.mid", primer_midi(), "audio/midi")},
                    data={"key": "G major", "form": "AABA"})
    assert r.status_code == 202, r.text
    wait_done(client, r.json()["status_url"])
    params, seen = calls[-1]
    assert set(seen) == {"voice.wav", "primer.mid"} and params["key"] == "G major" and params["form"] == "AABA"


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"key": "H minor"}, "key: unknown key 'H minor'"),
        ({"key": "D" * 17}, "key: String should have at most 16"),
        ({"key": 2}, "key: Input should be a valid string"),
        ({"key": ""}, "key: String should have at least 1"),
        ({"form": "A-B!"}, "bad form 'A-B!'"),
        ({"form": "AABA", "bars": 6}, "6 bars cannot be split into equal phrases of 2 to 16 bars (try 16 bars)"),
        ({"form": "A" * 65}, "form: String should have at most 64"),
        ({"instrument": "kazoo"}, "instrument: unknown instrument 'kazoo'"),
        ({"instrument": "flute,piano,harp"}, "MELODY or MELODY,ACCOMPANIMENT"),
        ({"instrument": "flute,300"}, "outside 0-127"),
        ({"instrument": 128}, "instrument: a General MIDI program is 0..127"),
        ({"instrument": True}, "instrument: give General MIDI names or program numbers"),
        ({"instrument": "piano " * 20}, "instrument: at most 100 characters"),
        ({"primer": "/etc/passwd"}, "primer: Extra inputs are not permitted"),
        ({"leadsheet": False}, "leadsheet: Extra inputs are not permitted"),
    ],
)
def test_bad_song_settings_are_refused_at_once(client, body, fragment):
    r = client.post("/api/compose", json={"quadrant": 1, **body})
    assert r.status_code == 422, r.text
    assert fragment in r.json()["detail"]  # (the upload forms: test_bad_primer_uploads)


def test_piano_model_takes_no_key_form_or_primer(client):
    # The module's server composes with a piano model (a conditional RBM): a song setting gets a clear answer.
    r = client.post("/api/compose", json={"quadrant": 1, "key": "D minor", **QUICK})
    assert r.status_code == 422 and "piano model" in r.json()["detail"] and "key" in r.json()["detail"]
    r = client.post("/api/compose/primer", files={"primer": ("p.mid", primer_midi(), "audio/midi")},
                    data={"quadrant": "1", "bars": "2"})
    assert r.status_code == 422 and "primer" in r.json()["detail"] and "piano model" in r.json()["detail"]
    # Instrument names work with every model.
    assert client.post("/api/compose", json={"quadrant": 1, "instrument": "violin", **QUICK}).status_code == 202


def test_bad_primer_uploads(recorded):
    client, calls = recorded

    def post(data: bytes, **form):
        form.setdefault("quadrant", "1")
        return client.post("/api/compose/primer", files={"primer": ("p.mid", data, "audio/midi")}, data=form)

    assert post(b"RIFF\x00\x00\x00\x00WAVEfmt ").status_code == 415  # not MIDI, by its bytes
    assert post(b"<html>hello</html>").status_code == 415
    r = post(b"MThd" + b"\x00" * 40)
    assert r.status_code == 422 and "could not be read as MIDI" in r.json()["detail"]
    r = post(primer_midi(drums=True))
    assert r.status_code == 422 and "no pitched notes" in r.json()["detail"]
    r = post(primer_midi(bars=33))
    assert r.status_code == 422 and "33 bars long; the limit is 32" in r.json()["detail"]
    r = post(primer_midi(qpm=5.0))  # its tempo is kept: at 5 qpm the piece would be hours of audio
    assert r.status_code == 422 and "outside 40-220" in r.json()["detail"]
    assert post(primer_midi(qpm=5.0), tempo="80").status_code == 202  # unless the request sets one
    r = post(b"MThd" + b"\x00" * (300 * 1024))
    assert r.status_code == 413 and "primer too large" in r.json()["detail"]
    r = post(b"MThd" + b"\x00" * (1024 * 1024))  # refused by the body cap before it is read
    assert r.status_code == 413 and "too large" in r.json()["detail"]
    r = post(primer_midi(), mood="sad")
    assert r.status_code == 422 and "mood: Extra inputs are not permitted" in r.json()["detail"]
    r = post(primer_midi(), voice="x")  # a recording goes to /api/compose/voice
    assert r.status_code == 422 and "voice: Extra inputs are not permitted" in r.json()["detail"]
    r = client.post("/api/compose/primer", files=[("primer", ("a.mid", primer_midi(), "audio/midi")),
                                                  ("primer", ("b.mid", primer_midi(), "audio/midi")),
                                                  ("quadrant", (None, "1"))])
    assert r.status_code == 422 and "more than once" in r.json()["detail"]
    r = post(primer_midi(), quadrant="", prompt="")
    assert r.status_code == 422 and "exactly one of" in r.json()["detail"]
    r = post(primer_midi(), prompt="happy")
    assert r.status_code == 422 and "exactly one of" in r.json()["detail"]
    for field, bad, fragment in [("bars", "4.5", "bars"), ("bars", "0", "bars"), ("key", "Q major", "unknown key"),
                                 ("form", "AB", "cannot be split"), ("instrument", "kazoo", "unknown instrument"),
                                 ("valence", "2", "valence")]:
        r = post(primer_midi(), **{field: bad, **({"bars": "5"} if field == "form" else {})})
        assert r.status_code == 422 and fragment in r.json()["detail"], (field, r.text)
    r = client.post("/api/compose/primer", files={"quadrant": (None, "1")})
    assert r.status_code == 422 and "primer" in r.json()["detail"]
    r = client.post("/api/compose/primer", data={"quadrant": "1"})  # url-encoded: no room for a file
    assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"]
    r = client.post("/api/compose/voice", files={"voice": ("v.wav", wav_bytes(), "audio/wav"),
                                                 "primer": ("p.mid", b"not midi", "audio/midi")})
    assert r.status_code == 415 and "MIDI" in r.json()["detail"]
    assert len(calls) == 1  # only the request with a tempo was composed
    # Nothing of the refused uploads stayed on disk.
    folders = [p for p in client.app.state.results_dir.iterdir() if p.is_dir()]
    assert len(folders) == 1 and not list(folders[0].glob("primer*"))


def test_worker_composes_a_song_with_the_settings_and_primer(tmp_path):
    # In this process (no worker start-up): the worker hands every song setting to compose().
    from moodsong.web.worker import run_job

    (tmp_path / "primer.mid").write_bytes(primer_midi(2))
    out = run_job(str(tmp_path), {"quadrant": 3, "bars": 4, "candidates": 1, "seed": 2, "key": "D minor",
                                  "form": "AB", "instrument": "flute,cello", "tempo": 84.0, "primer": "primer.mid"})
    assert out["ok"], out
    res = out["result"]
    plan = res["plan"]
    got = (plan["key"], plan["tempo_qpm"], plan["form"], plan["primer_bars"], plan["bars"])
    assert got == ("D minor", 84, "A B", 2, 6)
    assert [s["start_bar"] for s in plan["sections"]] == [3, 5] and len(plan["bar_chords"]) == 6
    assert plan["instruments"] == {"melody": 73, "accompaniment": 42}
    assert res["instruments"]["accompaniment"]["name"] == "Cello" and res["instrument"]["name"] == "Flute"
    assert res["plan_followed"]["bars"] >= 4 and res["model"] == "song"
    assert {"piece.mid", "piece.wav", "piece.png", "piece.musicxml"} <= {p.name for p in tmp_path.iterdir()}
    assert str(tmp_path) not in json.dumps(res)
    score = symusic.Score(str(tmp_path / "piece.mid"))
    melody = next(t for t in score.tracks if t.name == "Melody")
    assert [n.pitch for n in melody.notes][:8] == [60, 62, 64, 65, 67, 65, 64, 62]  # the primer, verbatim
    # A bad primer that got past the server's checks is reported in the composer's words, without a path.
    (tmp_path / "primer.mid").write_bytes(b"MThd junk")
    out = run_job(str(tmp_path), {"quadrant": 3, "bars": 4, "candidates": 1, "primer": "primer.mid"})
    assert not out["ok"] and "not a MIDI file" in out["error"] and str(tmp_path) not in out["error"]
    out = run_job(str(tmp_path), {"quadrant": 3, "bars": 4, "candidates": 1, "primer": "../x.mid"})
    assert not out["ok"] and "bad primer" in out["error"]


@pytest.mark.slow  # a worker process starts and loads the song model and the estimator
def test_song_from_a_primer_end_to_end(tmp_path):
    app = create_app(results_dir=tmp_path / "results", rate_limit=0, warm_start=False)
    with local(app) as c:
        r = c.post("/api/compose/primer", files={"primer": ("idea.mid", primer_midi(2), "audio/midi")},
                   data={"prompt": "a hopeful song", "bars": "8", "candidates": "2", "seed": "1", "key": "A major",
                         "form": "A B", "instrument": "vibraphone,acoustic grand piano"})
        assert r.status_code == 202, r.text
        job = wait_done(c, r.json()["status_url"], timeout_s=240)
        assert job["status"] == "done", job
        res = job["result"]
        plan = res["plan"]
        assert plan["key"] == "A major" and plan["form"] == "A B" and plan["primer_bars"] == 2
        assert plan["instruments"] == {"melody": 11, "accompaniment": 0} and len(plan["bar_chords"]) == 10
        assert res["plan_followed"]["bars"] >= 8
        sheet = c.get(res["files"]["musicxml"])
        assert sheet.status_code == 200 and b"<score-partwise" in sheet.content
        midi = symusic.Score.from_midi(c.get(res["files"]["midi"]).content)
        assert {t.name for t in midi.tracks} >= {"Melody", "Accompaniment"}
        assert not (c.app.state.results_dir / r.json()["id"] / "primer.mid").exists()


# -- IDs, files and the results folder -----------------------------------------------------------


def test_unknown_ids_and_path_traversal(client, results_dir):
    done = client.post("/api/compose", json={"quadrant": 4, "seed": 1, **QUICK}).json()
    assert wait_done(client, done["status_url"])["status"] == "done"
    base = done["status_url"]
    outside = results_dir.parent / "secret.txt"
    outside.write_text("secret")
    for url in [
        f"/api/results/{new_id()}",                    # well-formed but unknown
        "/api/results/abc",
        "/api/results/..%2F..%2Fsecret.txt",
        "/api/results/%2e%2e",
        f"/api/results/{new_id()}/piece.mid",
        f"{base}/..%2F..%2Fsecret.txt",
        f"{base}/%2e%2e%2fsecret.txt",
        f"{base}/voice.wav",
        f"{base}/piece.json",
        f"{base}/PIECE.MID",
        f"{base}/piece.mid%00.png",
    ]:
        r = client.get(url)
        assert r.status_code == 404, url
        assert "secret" not in r.text
    r = client.get(f"{base}/../../../secret.txt")  # normalised by the client into another route
    assert r.status_code == 404 and "secret" not in r.text
    # Nothing but ID-named folders with allow-listed files (and the server's lock file) was ever written.
    for p in results_dir.iterdir():
        if p.name == LOCK_NAME:
            continue
        assert p.is_dir() and valid_id(p.name)
        assert {f.name for f in p.iterdir()} <= {"piece.mid", "piece.wav", "piece.png", "piece.musicxml"}
    assert sorted(f.name for f in results_dir.parent.iterdir()) == ["results", "secret.txt"]


def test_results_expire(tmp_path):
    store = JobStore(tmp_path, max_age_s=10)
    job = store.create({"bars": 2, "candidates": 1}, "1.2.3.4")
    (job.dir / "piece.mid").write_bytes(b"MThd")
    store.mark_running(job)
    store.mark_finished(job, {"ok": True, "result": {}})
    assert store.get(job.id) is job and store.file(job, "piece.mid") is not None
    assert store.sweep(now=job.finished + 5) == 0
    assert store.sweep(now=job.finished + 11) == 1
    assert store.get(job.id) is None and not job.dir.exists()
    assert not valid_id("../" + new_id()[3:]) and not valid_id(new_id() + "/")


# -- limits ----------------------------------------------------------------------------------


def test_rate_limit_per_client(tiny_model, tmp_path):
    app = create_app(results_dir=tmp_path, rate_limit=2, api_rate_limit=8, model=tiny_model, warm_start=False)
    with local(app) as c:
        # Invalid requests (422) do not use up the compose limit; only accepted ones do.
        assert [c.post("/api/compose", json={"quadrant": 9}).status_code for _ in range(3)] == [422, 422, 422]
        statuses = [c.post("/api/compose", json={"quadrant": 1, **QUICK}) for _ in range(3)]
        assert [r.status_code for r in statuses] == [202, 202, 429]
        r = statuses[-1]
        assert int(r.headers["retry-after"]) >= 1 and "too many" in r.json()["detail"]
        # All API requests share the wider limit: 6 used so far, 8 allowed.
        statuses = [c.get("/api/health").status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        assert c.get("/").status_code == 200  # the page itself is not limited
    limiter = RateLimiter(60, burst=1)
    assert limiter.check("a", now=0.0) == 0 and limiter.check("a", now=0.5) > 0 and limiter.check("b", now=0.5) == 0
    assert limiter.check("a", now=1.1) == 0  # refilled after a second


def test_queue_cap_and_job_timeout(tiny_model, tmp_path):
    app = create_app(results_dir=tmp_path, rate_limit=0, max_queue=1, job_timeout_s=0.05, model=tiny_model,
                     warm_start=False)
    with local(app) as c:
        first = c.post("/api/compose", json={"quadrant": 2, "bars": 8, "candidates": 2})
        assert first.status_code == 202
        r = c.post("/api/compose", json={"quadrant": 2, **QUICK})
        assert r.status_code == 503 and "busy" in r.json()["detail"] and "retry-after" in r.headers
        job = wait_done(c, first.json()["status_url"])
        assert job["status"] == "failed" and "longer than" in job["error"]
        assert c.get("/api/health").json()["status"] == "ok"


def test_cors_off_by_default_and_on_when_asked(tiny_model, tmp_path):
    with local(create_app(results_dir=tmp_path / "a", model=tiny_model, warm_start=False)) as c:
        r = c.options("/api/compose",
                      headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in r.headers
        r = c.get("/api/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers
    app = create_app(results_dir=tmp_path / "b", model=tiny_model, cors_origins=["https://friend.example"],
                     warm_start=False)
    with local(app) as c:
        r = c.get("/api/health", headers={"Origin": "https://friend.example"})
        assert r.headers["access-control-allow-origin"] == "https://friend.example"


def test_broken_model_fails_the_job_with_a_clear_message(tmp_path):
    from moodsong.web.worker import run_job

    out = run_job(str(tmp_path), {"quadrant": 1, **QUICK}, model=str(tmp_path / "missing"))
    assert out["ok"] is False and "no such" in out["error"]  # checkpoint or model, in its own words
    out = run_job(str(tmp_path), {"quadrant": 1, "voice": "../../x.wav", **QUICK})
    assert out["ok"] is False and "bad recording" in out["error"]


def test_serve_help():
    r = CliRunner().invoke(main, ["serve", "--help"])
    assert r.exit_code == 0 and "--host" in r.output and "--port" in r.output and "Examples" in r.output


def test_own_temporary_results_folder_is_removed_at_shutdown(tiny_model):
    app = create_app(model=tiny_model, warm_start=False)
    folder = app.state.results_dir
    with local(app) as c:
        assert c.get("/api/health").status_code == 200 and folder.is_dir()
    assert not folder.exists()
