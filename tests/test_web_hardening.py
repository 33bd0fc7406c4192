"""The web server under attack: each defect an outside probe of ``moodsong serve`` found (issue 16), re-sent.

Every test sends the bad request (or kills the process) and checks the outcome:
a 4xx, memory that stays bounded in a child process with an address-space
limit, no worker left after its server dies, the per-client limit on by
default, nothing stale after a crash and a restart, no server path in any
message, a deadline for a whole request body, and foreign origins and host
names refused.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import make_dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_web import QUICK, header_rate_wav, local, wait_done, wav_bytes

from moodsong.cli import main
from moodsong.errors import MoodsongError
from moodsong.web import create_app
from moodsong.web.app import HostPolicy
from moodsong.web.jobs import LOCK_NAME, JobStore, MiB, _Worker, scrub_paths, valid_id

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and uses prctl")


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return not alive(pid)


def child_env(**extra) -> dict:
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")])
    return env


# -- 1. a tiny upload must not blow up memory ----------------------------------------------------

MEMORY_CHILD = """
import resource, sys
import numpy as np
from scipy.signal import resample_poly
from moodsong.emotion.voice import load_audio
from moodsong.errors import MoodsongError

def vm_bytes():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
resample_poly(np.zeros(100), 2, 3)  # load scipy's lazy parts before the limit
limit = vm_bytes() + 200 * 1024 * 1024  # 200 MB of headroom over what is loaded now
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
for path in sys.argv[1:]:
    try:
        x, sr, _ = load_audio(path)
        print(path, "ok", len(x), sr)
    except MoodsongError as exc:
        print(path, "refused", exc)
    except MemoryError:
        print(path, "MemoryError")
"""


@linux_only
def test_hostile_sample_rate_keeps_memory_bounded(tmp_path):
    files = {}
    for rate in (1_000_003, 100_000_007, 383_999, 44_101):
        files[rate] = tmp_path / f"{rate}.wav"
        files[rate].write_bytes(header_rate_wav(rate))
    out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, *map(str, files.values())], capture_output=True,
                         text=True, timeout=120, env=child_env())
    assert out.returncode == 0, out.stderr[-2000:]
    lines = {Path(line.split()[0]).stem: line for line in out.stdout.splitlines()}
    assert "refused" in lines["1000003"] and "sample rate" in lines["1000003"]
    assert "refused" in lines["100000007"]
    # Odd but plausible rates are read, resampled by a bounded filter (383999 Hz exactly would need 7.7M taps).
    assert lines["383999"].split()[1:3] == ["ok", str(round(16000 * 16000 / 383_999))]
    assert lines["44101"].split()[1] == "ok"
    assert "MemoryError" not in out.stdout


def test_worker_refuses_a_hostile_rate_with_a_clean_message(tmp_path):
    from moodsong.web.worker import run_job

    (tmp_path / "voice.wav").write_bytes(header_rate_wav(1_000_003))
    out = run_job(str(tmp_path), {"voice": "voice.wav", **QUICK})
    assert out["ok"] is False and "sample rate" in out["error"] and str(tmp_path) not in out["error"]


# -- 2. no orphaned workers, and a time limit per job --------------------------------------------

PARENT = """
import sys, time
from moodsong.web.jobs import _Worker
w = _Worker(sys.argv[1], 1, warmup=False)
w.conn.send((sys.argv[2], {"quadrant": 2, "bars": 256, "candidates": 64}))  # minutes of work
print(w.proc.pid, flush=True)
time.sleep(300)
"""


@linux_only
def test_worker_dies_when_its_server_is_killed(tiny_model, tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", PARENT, tiny_model, str(tmp_path)], stdout=subprocess.PIPE,
                              text=True, env=child_env())
    try:
        worker = int(parent.stdout.readline())
        time.sleep(2.0)  # let the worker start on its job
        assert alive(worker)
    finally:
        parent.kill()  # kill -9: no clean-up code runs in the server
        parent.wait()
    assert gone_within(worker, 15), "the worker outlived its server"


@linux_only
def test_worker_stops_mid_job_when_the_server_end_closes(tiny_model, tmp_path):
    # The watchdog alone (what is left where the kernel does not signal a parent's death).
    w = _Worker(tiny_model, 1, warmup=False)
    w.conn.send((str(tmp_path), {"quadrant": 2, "bars": 256, "candidates": 64}))
    time.sleep(1.0)
    w.conn.close()
    assert w.proc.wait(15) == 1


@linux_only
@pytest.mark.slow  # a worker process starts and loads torch: ~3-7 s on 2 busy cores
def test_worker_ends_a_job_past_its_own_limit(tiny_model, tmp_path):
    w = _Worker(tiny_model, 1, warmup=False, job_limit_s=1.0)
    try:
        w.conn.send((str(tmp_path), {"quadrant": 2, "bars": 256, "candidates": 64}))
        assert w.proc.wait(30) == -signal.SIGALRM
    finally:
        w.kill()


# -- 3. one client cannot fill the queue --------------------------------------------------------------


def test_per_client_pending_limit_is_on_by_default(tiny_model, tmp_path, monkeypatch):
    import uvicorn

    import moodsong.web

    seen = {}

    class Stop(Exception):
        pass

    def fake_create_app(**kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(moodsong.web, "create_app", fake_create_app)
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    r = CliRunner().invoke(main, ["serve"])
    assert isinstance(r.exception, Stop)
    assert seen["max_pending_per_client"] == 4 and seen["max_disk_bytes"] == 2 * 1024**3
    assert seen["host"] == "127.0.0.1" and seen["allowed_hosts"] == []

    app = create_app(results_dir=tmp_path, rate_limit=0, model=tiny_model, warm_start=False)  # library defaults
    with local(app) as c:
        codes = [c.post("/api/compose", json={"quadrant": 1, **QUICK}).status_code for _ in range(5)]
        assert codes == [202] * 4 + [429]
        r = c.post("/api/compose", json={"quadrant": 1, **QUICK})
        assert "already have 4" in r.json()["detail"] and "retry-after" in r.headers


# -- 4. nothing stale after a crash -----------------------------------------------------------------------

CRASHING_SERVER = """
import sys, time
from moodsong.web import create_app
app = create_app(results_dir=sys.argv[1] or None, model=sys.argv[2], warm_start=False)
store = app.state.store
job = store.create({"quadrant": 1, "bars": 2, "candidates": 1}, "127.0.0.1")
(job.dir / "piece.wav").write_bytes(b"RIFF half a file")  # a job killed half-way
(store.root / ".warmup-x1y2").mkdir()  # a worker's warm-up, killed half-way
print(store.root, flush=True)
time.sleep(300)
"""


def crash_a_server(results: str, model: str, tmp: Path) -> Path:
    proc = subprocess.Popen([sys.executable, "-c", CRASHING_SERVER, results, model], stdout=subprocess.PIPE, text=True,
                            env=child_env(TMPDIR=str(tmp)))
    try:
        root = Path(proc.stdout.readline().strip())
    finally:
        proc.kill()  # kill -9
        proc.wait()
    assert root.is_dir() and any(valid_id(p.name) for p in root.iterdir())
    return root


@linux_only
def test_crash_then_restart_leaves_no_temporary_folder(tiny_model, tmp_path, monkeypatch):
    dead = crash_a_server("", tiny_model, tmp_path)
    base = dead.parent
    assert base == tmp_path / f"moodsong-web-{os.getuid()}"
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    app = create_app(model=tiny_model, warm_start=False)  # the next server
    assert not dead.exists()
    with local(app) as c:
        assert c.get("/api/health").status_code == 200
    assert list(base.iterdir()) == []  # and it removes its own at shutdown


@linux_only
def test_crash_then_restart_sweeps_the_results_folder(tiny_model, tmp_path):
    results = tmp_path / "results"
    crash_a_server(str(results), tiny_model, tmp_path)
    app = create_app(results_dir=results, model=tiny_model, warm_start=False)
    with local(app) as c:
        assert c.get("/api/health").status_code == 200
        assert [p.name for p in results.iterdir()] == [LOCK_NAME]  # half-written job and warm-up gone
        assert (results / LOCK_NAME).read_text().strip() == str(os.getpid())
        # Two live servers never share a folder (each would sweep the other's results).
        with pytest.raises(MoodsongError, match="another moodsong server"):
            create_app(results_dir=results, model=tiny_model, warm_start=False)


def test_disk_budget_evicts_oldest_results_first(tmp_path):
    store = JobStore(tmp_path, max_disk_bytes=8 * MiB, min_free_bytes=0)
    jobs = []
    for _ in range(3):
        assert store.make_room({"bars": 1})
        job = store.create({"bars": 1, "candidates": 1}, "c")
        (job.dir / "piece.wav").write_bytes(b"\0" * (3 * MiB))
        store.mark_running(job)
        store.mark_finished(job, {"ok": True, "result": {}})
        jobs.append(job)
    # 9 MiB written, 8 allowed: the oldest went as soon as the third finished.
    assert store.get(jobs[0].id) is None and not jobs[0].dir.exists()
    assert store.get(jobs[1].id) is jobs[1] and store.disk_bytes() == 6 * MiB
    # A new job reserves its worst case (2 bars: ~3.2 MiB): room is made by evicting the next oldest.
    assert store.make_room({"bars": 2}) and store.get(jobs[1].id) is None and store.get(jobs[2].id) is jobs[2]
    # Free space: never fill the disk, even within the budget.
    store.min_free_bytes = 1 << 60
    assert not store.make_room({"bars": 1}) and not store.jobs


def test_low_free_space_refuses_new_jobs(tiny_model, tmp_path):
    app = create_app(results_dir=tmp_path, rate_limit=0, model=tiny_model, warm_start=False, min_free_bytes=1 << 60)
    with local(app) as c:
        r = c.post("/api/compose", json={"quadrant": 1, **QUICK})
        assert r.status_code == 503 and "disk space" in r.json()["detail"] and "retry-after" in r.headers


# -- 5. no server paths in messages ----------------------------------------------------------------


def test_failed_voice_job_names_no_server_path(tmp_path, monkeypatch):
    import moodsong.emotion.voice
    from moodsong.web.worker import run_job

    # What the probe saw: a recording in which nothing was recognised.
    heard = moodsong.emotion.voice.Transcript(text=". . . .", backend="whisper")  # beeps come back as dots
    monkeypatch.setattr(moodsong.emotion.voice, "transcribe", lambda *a, **k: heard)
    (tmp_path / "voice.wav").write_bytes(wav_bytes())
    out = run_job(str(tmp_path), {"voice": "voice.wav", **QUICK})
    assert out["ok"] is False and out["error"].startswith("the recording: no speech recognised"), out
    assert str(tmp_path) not in out["error"] and "voice.wav" not in out["error"]


@pytest.mark.slow  # a worker process starts and loads torch: ~3-7 s on 2 busy cores
def test_failed_jobs_over_the_api_name_no_server_path(tmp_path):
    secret = tmp_path / "private" / "models" / "mine"
    app = create_app(results_dir=tmp_path / "results", rate_limit=0, model=str(secret), warm_start=False)
    with local(app) as c:
        r = c.post("/api/compose", json={"quadrant": 1, **QUICK})
        job = wait_done(c, r.json()["status_url"])
        assert job["status"] == "failed" and "no such" in job["error"], job
        text = json.dumps(job)
        assert str(tmp_path) not in text and "private" not in text and "/tmp" not in text


def test_worker_errors_are_scrubbed(tmp_path):
    from moodsong.web.worker import run_job

    (tmp_path / "voice.wav").write_bytes(b"RIFF\0\0\0\0WAVEnot really")
    for params, model in [({"voice": "voice.wav", **QUICK}, None), ({"quadrant": 1, **QUICK}, str(tmp_path / "gone"))]:
        out = run_job(str(tmp_path), params, model=model)
        assert out["ok"] is False and not re.search(r"/\w", out["error"]), out["error"]
    assert scrub_paths("/srv/r/abc/voice.wav: no speech", "/srv/r/abc") == "the recording: no speech"
    assert scrub_paths("cannot read /home/me/models/x.json now") == "cannot read x.json now"
    assert scrub_paths("give one of: valence/arousal, 1/2") == "give one of: valence/arousal, 1/2"


# -- 6. a deadline for the whole body; POSTs outside /api are limited too ---------------------------------


def asgi_post(app, path: str, chunks: list[bytes], gap_s: float, headers: dict | None = None) -> int:
    """POST ``chunks`` to the app, ``gap_s`` seconds apart (each gap within the per-chunk timeout); the status."""
    async def go() -> int:
        todo = list(chunks)
        status = []

        async def receive():
            if not todo:
                await asyncio.sleep(3600)
            await asyncio.sleep(gap_s)
            chunk = todo.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(todo)}

        async def send(message):
            if message["type"] == "http.response.start":
                status.append(message["status"])

        hdrs = {"host": "localhost", "content-type": "application/json", **(headers or {})}
        scope = {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "query_string": b"",
                 "headers": [(k.encode(), v.encode()) for k, v in hdrs.items()], "client": ("10.0.0.9", 1234),
                 "server": ("localhost", 80), "scheme": "http", "http_version": "1.1", "root_path": ""}
        await asyncio.wait_for(app(scope, receive, send), 30)
        return status[0]

    return asyncio.run(go())


def test_slow_body_hits_the_deadline(tiny_model, tmp_path):
    app = create_app(results_dir=tmp_path, model=tiny_model, warm_start=False, body_timeout_s=5.0, body_deadline_s=1.0)
    body = b'{"quadrant": 1, "bars": 2, "candidates": 1}                                    '
    # One byte every 0.1 s (~8 s in all): every chunk is in time, the body as a whole is not.
    assert asgi_post(app, "/api/compose", [bytes([b]) for b in body], 0.1) == 408
    # The same body sent at once is read (and refused only for its content: no job, no worker).
    assert asgi_post(app, "/api/compose", [b'{"quadrant": 9}'], 0.0) == 422


def test_posts_outside_the_api_are_rate_limited(tiny_model, tmp_path):
    app = create_app(results_dir=tmp_path, model=tiny_model, warm_start=False, api_rate_limit=3)
    with local(app) as c:
        codes = [c.post(path, content=b"x").status_code for path in ("/", "/static/app.js", "/nothing", "/")]
        assert codes == [405, 405, 404, 429]
        assert c.get("/").status_code == 200  # the page is not limited


# -- 7. cross-site requests and DNS rebinding ------------------------------------------------------------------


def test_foreign_origin_and_host_are_refused(tiny_model, tmp_path):
    app = create_app(results_dir=tmp_path, model=tiny_model, warm_start=False, rate_limit=0,
                     cors_origins=["https://friend.example"], allowed_hosts=["music.example.org"])
    invalid = {"quadrant": 9}  # passes the guard only to be refused by validation (422): no job is queued
    with local(app) as c:
        for origin in ("http://evil.example", "null", "http://localhost:3000", "http://localhost.evil.example",
                       "file://", "https://evil.example"):
            r = c.post("/api/compose", json=invalid, headers={"Origin": origin})
            assert r.status_code == 403 and "other sites" in r.json()["detail"], origin
        r = c.post("/api/compose/voice", files={"voice": ("v.wav", wav_bytes(), "audio/wav")}, data={"bars": "1"},
                   headers={"Origin": "http://evil.example"})
        assert r.status_code == 403
        r = c.post("/api/compose", json=invalid, headers={"Sec-Fetch-Site": "cross-site"})
        assert r.status_code == 403
        for origin in (None, "http://localhost", "https://friend.example", "https://music.example.org"):
            r = c.post("/api/compose", json=invalid, headers={"Origin": origin} if origin else {})
            assert r.status_code == 422, origin
        # DNS rebinding: a name that is not ours, whatever address it resolves to.
        for host in ("evil.example", "evil.example:8000", "127.0.0.1.nip.io", ""):
            r = c.get("/", headers={"Host": host})
            assert r.status_code == 400 and "host name" in r.json()["detail"], host
        for host in ("localhost:8000", "127.0.0.1", "[::1]:8000", "music.example.org"):
            assert c.get("/api/health", headers={"Host": host}).status_code == 200, host


def test_host_policy_for_a_server_on_every_interface():
    wide = HostPolicy(bind_host="0.0.0.0")
    assert wide.host_ok("192.168.1.20:8000") and wide.host_ok("[fe80::1]:8000") and wide.host_ok("localhost")
    assert not wide.host_ok("evil.example") and not wide.host_ok(None)
    assert wide.origin_ok("http://192.168.1.20:8000", "192.168.1.20:8000", "same-origin")
    assert not wide.origin_ok("http://192.168.1.21:8000", "192.168.1.20:8000", "cross-site")
    narrow = HostPolicy(bind_host="10.1.2.3")
    assert narrow.host_ok("10.1.2.3:8000") and not narrow.host_ok("10.1.2.4")
    assert HostPolicy(["*"]).host_ok("anything.example")
    # Behind a proxy that sends its own Host: the public name the operator gave is a trusted Origin.
    proxied = HostPolicy(["music.example.org"])
    assert proxied.host_ok("127.0.0.1:8000") and proxied.origin_ok("https://music.example.org", "127.0.0.1:8000", None)
    assert not proxied.origin_ok("https://evil.example", "127.0.0.1:8000", "cross-site")


# -- the worker passes the composer's own fields through ------------------------------------------------------


def test_worker_passes_declared_fields_and_keeps_server_fields(monkeypatch, tmp_path):
    import moodsong.pipeline
    from moodsong.web.worker import run_job

    seen = []

    def fake_compose(request):
        seen.append(request)
        raise MoodsongError("stop here")

    # A composer that has grown fields (as the song generator's key, tempo and instrument names).
    grown = make_dataclass("GrownRequest", [("key", "str | None", None), ("tempo", "float | None", None),
                                            ("instrument", "str | None", None)],
                           bases=(moodsong.pipeline.ComposeRequest,))
    monkeypatch.setattr(moodsong.pipeline, "compose", fake_compose)
    monkeypatch.setattr(moodsong.pipeline, "ComposeRequest", grown)
    params = {"quadrant": 2, "bars": 3, "candidates": 2, "temperature": 1.5, "seed": None, "key": "D minor",
              "tempo": 90.0, "instrument": 40, "out_dir": "/etc", "stem": "../x", "model": "/evil", "audio": "mp3",
              "unknown": 1}
    out = run_job(str(tmp_path), params, model="shipped")
    assert out == {"ok": False, "error": "stop here"}
    req = seen[0]
    # The API's program number reaches a field that takes instrument names as text.
    assert (req.quadrant, req.bars, req.candidates, req.temperature, req.key, req.tempo, req.instrument) == (
        2, 3, 2, 1.5, "D minor", 90.0, "40")
    assert req.seed is None and not hasattr(req, "unknown")
    # Files go where the server says, named as it says; compose() writes them itself.
    assert (req.out_dir, req.stem, req.model, req.audio, req.keep) == (str(tmp_path), "piece", "shipped", "wav", 1)


def test_worker_takes_uploads_only_from_the_job_folder(monkeypatch, tmp_path):
    import moodsong.pipeline
    from moodsong.web.worker import run_job

    seen = []

    def fake_compose(request):
        seen.append(request)
        raise MoodsongError("stop here")

    monkeypatch.setattr(moodsong.pipeline, "compose", fake_compose)
    # A path in params never reaches the composer: the primer is the job folder's own file, or nothing.
    out = run_job(str(tmp_path), {"quadrant": 1, "primer": "/etc/passwd", **QUICK})
    assert out == {"ok": False, "error": "bad primer name"} and not seen
    run_job(str(tmp_path), {"quadrant": 1, "primer": "primer.mid", "leadsheet": False, **QUICK})
    assert seen[0].primer == os.path.join(str(tmp_path), "primer.mid") and seen[0].leadsheet is True
    run_job(str(tmp_path), {"quadrant": 1, **QUICK})
    assert seen[1].primer is None and seen[1].out_dir == str(tmp_path)  # compose() writes every file itself
