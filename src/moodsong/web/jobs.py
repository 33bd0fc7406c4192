"""Composition jobs for the web server: random IDs, a bounded pool of worker processes, expiry.

Composing is CPU-bound (sampling, rendering, drawing) and uses libraries that
are not thread-safe (matplotlib, music21), so it runs in a fixed number of
worker *processes* (:mod:`moodsong.web.worker`). Each worker loads the models
once and then takes jobs over a socket; a job that runs past its time limit gets its worker killed and replaced,
so one runaway request cannot hold a worker forever.

The HTTP layer (:mod:`moodsong.web.app`) never touches the file system with
anything a client sent: job folders are ``<results_dir>/<id>`` with a
server-made random ``id``, and files inside are fixed names from :data:`FILES`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

__all__ = ["FILES", "Job", "JobStore", "ComposerPool", "new_id", "valid_id"]

log = logging.getLogger("moodsong.web")

#: The only files a client can fetch from a result, with their media types.
FILES: dict[str, str] = {
    "piece.mid": "audio/midi",
    "piece.wav": "audio/wav",
    "piece.png": "image/png",
}
#: Result IDs: 16 random bytes, URL-safe base64 (22 characters); nothing else is ever looked up.
_ID_RE = re.compile(r"[A-Za-z0-9_-]{22}")
#: A recording is saved as ``voice.<kind>`` (one of these names), which moodsong.web.worker reads.
VOICE_NAMES = ("voice.wav", "voice.flac", "voice.ogg")


def new_id() -> str:
    """A fresh random result ID (128 bits, URL-safe)."""
    return secrets.token_urlsafe(16)


def valid_id(job_id: str) -> bool:
    """Whether ``job_id`` has the shape of an ID this server makes (no dots, no slashes)."""
    return bool(_ID_RE.fullmatch(job_id))


@dataclass
class Job:
    """One compose request and what became of it.

    Times are ``time.monotonic()`` seconds; ``status`` is ``"queued"``,
    ``"running"``, ``"done"`` or ``"failed"``.
    """

    id: str
    dir: Path
    params: dict
    client: str
    cost: float  # relative work (bars x candidates), for the time estimate
    created: float = field(default_factory=time.monotonic)
    status: str = "queued"
    started: float | None = None
    finished: float | None = None
    result: dict | None = None
    error: str | None = None

    def voice_path(self, kind: str) -> Path:
        """Where the recording of this job goes; ``kind`` is ``"wav"``, ``"flac"`` or ``"ogg"``."""
        name = f"voice.{kind}"
        if name not in VOICE_NAMES:
            raise ValueError(f"unknown recording kind {kind!r}")
        return self.dir / name


class JobStore:
    """Jobs in memory, their files under ``results_dir/<id>/``; finished jobs expire after ``max_age_s``.

    Parameters
    ----------
    results_dir : path
        Folder for result folders (created if missing).
    max_age_s : float
        Seconds a finished result stays available.
    max_jobs : int
        Most jobs kept at once; the oldest finished ones go first when full.
    """

    def __init__(self, results_dir: str | os.PathLike, max_age_s: float = 3600.0, max_jobs: int = 500):
        self.root = Path(results_dir).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_age_s = float(max_age_s)
        self.max_jobs = int(max_jobs)
        self.jobs: dict[str, Job] = {}
        self._seconds_per_cost = 0.35  # running estimate of compose seconds per bar x candidate

    # -- creation and lookup ---------------------------------------------------------

    def create(self, params: dict, client: str) -> Job:
        self.sweep()
        if len(self.jobs) >= self.max_jobs:
            self._evict_oldest_finished()
        job_id = new_id()
        job_dir = self.root / job_id
        job_dir.mkdir(mode=0o700)
        cost = float(params.get("bars", 8)) * float(params.get("candidates", 4))
        job = Job(job_id, job_dir, params, client, cost)
        self.jobs[job_id] = job
        return job

    def get(self, job_id: str) -> Job | None:
        if not valid_id(job_id):
            return None
        return self.jobs.get(job_id)

    def file(self, job: Job, name: str) -> Path | None:
        """The path of an allow-listed result file, or None (unknown name, missing, or outside the folder)."""
        if name not in FILES or job.status != "done":
            return None
        path = (job.dir / name).resolve()
        if path.parent != self.root / job.id or not path.is_file():
            return None
        return path

    def position(self, job: Job) -> int:
        """How many queued jobs are ahead of this one (0 when it runs or is next)."""
        if job.status != "queued":
            return 0
        return sum(1 for j in self.jobs.values() if j.status == "queued" and j.created < job.created)

    def pending(self) -> int:
        return sum(1 for j in self.jobs.values() if j.status in ("queued", "running"))

    def pending_for(self, client: str) -> int:
        return sum(1 for j in self.jobs.values() if j.status in ("queued", "running") and j.client == client)

    def estimate_s(self, job: Job) -> float:
        """Expected compose time of a job, from the jobs finished so far."""
        return round(2.0 + self._seconds_per_cost * job.cost, 1)

    # -- state changes ---------------------------------------------------------------

    def mark_running(self, job: Job) -> None:
        job.status, job.started = "running", time.monotonic()

    def mark_finished(self, job: Job, outcome: dict) -> None:
        job.finished = time.monotonic()
        if outcome.get("ok"):
            job.status, job.result = "done", outcome["result"]
            took = job.finished - (job.started or job.finished)
            # Exponential average, so the progress bar follows the machine's actual speed.
            self._seconds_per_cost = 0.7 * self._seconds_per_cost + 0.3 * max(took - 2.0, 0.1) / max(job.cost, 1.0)
        else:
            job.status, job.error = "failed", outcome.get("error") or "composing failed"
        for name in VOICE_NAMES:  # the recording is not kept once heard
            (job.dir / name).unlink(missing_ok=True)

    # -- expiry ----------------------------------------------------------------------

    def _remove(self, job: Job) -> None:
        self.jobs.pop(job.id, None)
        if valid_id(job.id) and job.dir.parent == self.root:
            shutil.rmtree(job.dir, ignore_errors=True)

    def _evict_oldest_finished(self) -> None:
        done = sorted((j for j in self.jobs.values() if j.finished is not None), key=lambda j: j.finished)
        for j in done[: max(1, len(self.jobs) - self.max_jobs + 1)]:
            self._remove(j)

    def sweep(self, now: float | None = None) -> int:
        """Remove finished jobs older than ``max_age_s``; returns how many went."""
        now = time.monotonic() if now is None else now
        old = [j for j in self.jobs.values() if j.finished is not None and now - j.finished > self.max_age_s]
        for j in old:
            self._remove(j)
        return len(old)

    def sweep_disk(self) -> None:
        """At start-up: delete result folders a previous run left behind (ID-shaped names only)."""
        for p in self.root.iterdir():
            if p.is_dir() and not p.is_symlink() and valid_id(p.name) and p.name not in self.jobs:
                if time.time() - p.stat().st_mtime > self.max_age_s:
                    shutil.rmtree(p, ignore_errors=True)


class _Worker:
    """One ``python -m moodsong.web.worker`` process and the socket to it."""

    def __init__(self, model: str | None, threads: int, warmup: bool = True):
        ours, theirs = socket.socketpair()
        cmd = [sys.executable, "-m", "moodsong.web.worker", "--fd", str(theirs.fileno()), "--threads", str(threads)]
        if model is not None:
            cmd += ["--model", str(model)]
        if not warmup:
            cmd += ["--no-warmup"]
        self.proc = subprocess.Popen(cmd, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        theirs.close()
        self.conn = Connection(ours.detach())
        self.ready = False

    def wait_ready(self, warmup_s: float = 300.0) -> None:
        """Block until the worker has loaded its models (run in a thread)."""
        if not self.ready:
            if not self.conn.poll(warmup_s):
                raise TimeoutError("worker did not start")
            self.conn.recv()  # ("ready", None)
            self.ready = True

    def call(self, msg, timeout_s: float) -> dict:
        """Send one job and wait for its answer (blocking; run in a thread)."""
        self.wait_ready()
        self.conn.send(msg)
        if not self.conn.poll(timeout_s):
            raise TimeoutError
        _, outcome = self.conn.recv()
        return outcome

    def stop(self, wait_s: float = 2.0) -> None:
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        try:
            self.proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            self.kill()
        self.conn.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self.conn.close()


class ComposerPool:
    """``workers`` composer processes; :meth:`run` waits for a free one, so at most ``workers`` jobs run at once.

    Parameters
    ----------
    workers : int
        Worker processes (each holds its own copy of the models, ~0.5 GB).
    timeout_s : float
        Longest a job may run; past it the worker is killed and replaced.
    model : str, optional
        An emotion-conditional model (checkpoint path without suffix) instead of the shipped one.
    warmup : bool
        Compose a tiny piece when a worker starts, so its first real job is fast.
    """

    def __init__(self, workers: int = 1, timeout_s: float = 120.0, model: str | None = None, warmup: bool = True):
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.workers, self.timeout_s, self.model, self.warmup = int(workers), float(timeout_s), model, warmup
        self._threads_per_worker = max(1, (os.cpu_count() or 1) // self.workers)
        self._idle: asyncio.Queue | None = None
        self._all: list[_Worker] = []
        self._waiters = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="moodsong-wait")

    def _spawn(self) -> _Worker:
        w = _Worker(self.model, self._threads_per_worker, self.warmup)
        self._all.append(w)
        return w

    async def start(self, eager: bool = True) -> None:
        """Start the workers now (``eager``), or each on first need."""
        self._idle = asyncio.Queue()
        for _ in range(self.workers if eager else 0):
            self._idle.put_nowait(self._spawn())

    async def run(self, job_dir: str, params: dict, on_start=None) -> dict:
        """Compose in the next free worker; ``on_start()`` is called when it begins."""
        assert self._idle is not None, "start() the pool first"
        if self._idle.empty() and len(self._all) < self.workers:
            self._idle.put_nowait(self._spawn())
        worker: _Worker = await self._idle.get()
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._waiters, worker.wait_ready)
            if on_start is not None:
                on_start()
            outcome = await loop.run_in_executor(self._waiters, worker.call, (job_dir, params), self.timeout_s)
        except TimeoutError:
            log.warning("job in %s ran past %gs; replacing its worker", job_dir, self.timeout_s)
            worker = self._replace(worker)
            outcome = {"ok": False, "error": f"composing took longer than {self.timeout_s:g} s; try fewer bars or candidates"}
        except (EOFError, OSError):
            log.warning("worker %s died; replacing it", worker.proc.pid)
            worker = self._replace(worker)
            outcome = {"ok": False, "error": "internal error while composing; please try again"}
        finally:
            self._idle.put_nowait(worker)
        return outcome

    def _replace(self, worker: _Worker) -> _Worker:
        worker.kill()
        self._all.remove(worker)
        return self._spawn()

    def stop(self) -> None:
        for w in self._all:
            w.stop()
        self._all.clear()
        self._waiters.shutdown(wait=False, cancel_futures=True)

    def pids(self) -> list[int]:
        return [w.proc.pid for w in self._all]
