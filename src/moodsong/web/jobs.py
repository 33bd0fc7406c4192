"""Composition jobs for the web server: random IDs, a bounded pool of worker processes, expiry.

Composing is CPU-bound (sampling, rendering, drawing) and uses libraries that
are not thread-safe (matplotlib, music21), so it runs in a fixed number of
worker *processes* (:mod:`moodsong.web.worker`). Each worker loads the models
once and then takes jobs over a socket; a job that runs past its time limit gets its worker killed and replaced,
so one runaway request cannot hold a worker forever.

The HTTP layer (:mod:`moodsong.web.app`) never touches the file system with
anything a client sent: job folders are ``<results_dir>/<id>`` with a
server-made random ``id``, and files inside are fixed names from :data:`FILES`.

Crashes leave nothing behind for long. A server holds an exclusive lock on
``<results_dir>/.moodsong.lock`` (with its pid in it) while it runs, so at
start-up every job folder it finds is a dead run's and is removed, and two
live servers never share a folder. Without ``--results`` each server gets
``<tmp>/moodsong-web-<uid>/run-*``, and start-up removes the folders of the
runs whose lock is free (their server died, even by ``kill -9``). Workers die
with the server (:mod:`moodsong.web.worker`), and disk use is held under a
budget (oldest results evicted first) and above a free-space floor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

from moodsong.errors import MoodsongError

try:  # advisory locks mark a results folder as in use (POSIX); without them nothing is swept by lock
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["FILES", "PRIMER_NAME", "Job", "JobStore", "ComposerPool", "new_id", "valid_id", "own_results_dir",
           "sweep_dead_runs", "scrub_paths"]

log = logging.getLogger("moodsong.web")

#: The only files a client can fetch from a result, with their media types.
FILES: dict[str, str] = {
    "piece.mid": "audio/midi",
    "piece.wav": "audio/wav",
    "piece.png": "image/png",
    "piece.musicxml": "application/vnd.recordare.musicxml+xml",  # the lead sheet (song model only)
}
#: Result IDs: 16 random bytes, URL-safe base64 (22 characters); nothing else is ever looked up.
_ID_RE = re.compile(r"[A-Za-z0-9_-]{22}")
#: A recording is saved as ``voice.<kind>`` (one of these names), which moodsong.web.worker reads.
VOICE_NAMES = ("voice.wav", "voice.flac", "voice.ogg")
#: An uploaded primer (a MIDI file to continue) is saved under this one name, which moodsong.web.worker reads.
PRIMER_NAME = "primer.mid"
#: The lock file that marks a results folder as in use by a live server (holds its pid).
LOCK_NAME = ".moodsong.lock"
#: Workers warm up in ``<results_dir>/.warmup-*`` so that a crash leaves nothing outside the results folder.
WARMUP_PREFIX = ".warmup-"
MiB = 1024 * 1024
#: Disk a job may fill while it runs, per bar: the WAV is the bulk (44.1 kHz stereo 16-bit at the slowest
#: tempo, 40 qpm, is ~1.06 MB a bar; a 32-bar piece was measured at 34 MB).
RESERVE_BYTES_PER_BAR = int(1.1 * MiB)
#: Absolute paths (two or more components) in a message; only their last component is shown to clients.
_PATH_RE = re.compile(r"(?<![\w.~-])(?:[A-Za-z]:)?(?:[/\\][^\s/\\:'\"]+){2,}[/\\]?")


def scrub_paths(message: str, job_dir: str | os.PathLike | None = None) -> str:
    """``message`` without server paths: the recording becomes "the recording", other paths their file name.

    Error messages from the library name the files they were given (``/tmp/.../voice.wav: no speech
    recognised``); a client must not learn where the server keeps anything.
    """
    if job_dir is not None:
        for name in VOICE_NAMES:
            message = message.replace(os.path.join(str(job_dir), name), "the recording")
        message = message.replace(os.path.join(str(job_dir), PRIMER_NAME), "the primer")
    return _PATH_RE.sub(lambda m: Path(m.group(0).rstrip("/\\").replace("\\", "/")).name, message)


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
    bytes: int = 0  # disk used by its folder once finished

    def voice_path(self, kind: str) -> Path:
        """Where the recording of this job goes; ``kind`` is ``"wav"``, ``"flac"`` or ``"ogg"``."""
        name = f"voice.{kind}"
        if name not in VOICE_NAMES:
            raise ValueError(f"unknown recording kind {kind!r}")
        return self.dir / name

    def primer_path(self) -> Path:
        """Where the uploaded primer (MIDI) of this job goes."""
        return self.dir / PRIMER_NAME


def job_bars(params: dict) -> int:
    """Bars a job writes: the new ones plus those of an uploaded primer (its notes are copied)."""
    return int(params.get("bars", 16)) + int(params.get("primer_bars", 0))


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
    max_disk_bytes : int
        Disk budget of all results, in bytes, counting each queued or running job at its worst-case
        size (``RESERVE_BYTES_PER_BAR`` per bar, so the budget holds whatever they write); the oldest
        finished results go first when it is exceeded. 0: no budget.
    min_free_bytes : int
        Free space (bytes) to leave on the results disk; new jobs are refused when even after evicting
        every finished result a job could push free space below it.

    Raises
    ------
    MoodsongError
        Another live server holds the folder.
    """

    def __init__(self, results_dir: str | os.PathLike, max_age_s: float = 3600.0, max_jobs: int = 500,
                 max_disk_bytes: int = 2048 * MiB, min_free_bytes: int = 256 * MiB):
        self.root = Path(results_dir).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_age_s = float(max_age_s)
        self.max_jobs = int(max_jobs)
        self.max_disk_bytes, self.min_free_bytes = int(max_disk_bytes), int(min_free_bytes)
        self.jobs: dict[str, Job] = {}
        self._seconds_per_cost = 0.35  # running estimate of compose seconds per bar x candidate
        self._lock_fd: int | None = None
        self.lock()

    # -- the folder lock -------------------------------------------------------------

    def lock(self) -> None:
        """Take the results folder for this server: an exclusive lock on ``LOCK_NAME``, which holds our pid.

        The kernel drops the lock when the process ends in any way, so a free lock means
        whatever is in the folder belongs to no live server.
        """
        if self._lock_fd is not None or fcntl is None:
            return
        fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise MoodsongError(f"another moodsong server is using {self.root}; give each server its own "
                                f"--results folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def close(self) -> None:
        """Release the folder (at shutdown)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __del__(self):
        self.close()

    # -- creation and lookup ---------------------------------------------------------

    def create(self, params: dict, client: str) -> Job:
        self.sweep()
        if len(self.jobs) >= self.max_jobs:
            self._evict_oldest_finished()
        job_id = new_id()
        job_dir = self.root / job_id
        job_dir.mkdir(mode=0o700)
        cost = float(job_bars(params)) * float(params.get("candidates", 4))
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

    # -- disk ------------------------------------------------------------------------

    @staticmethod
    def reserve_bytes(params: dict) -> int:
        """Worst-case disk use of a job while it runs, in bytes."""
        return job_bars(params) * RESERVE_BYTES_PER_BAR + MiB

    def disk_bytes(self) -> int:
        """Disk the results use (finished jobs: measured; others: their worst case), in bytes."""
        return sum(j.bytes if j.finished is not None else self.reserve_bytes(j.params) for j in self.jobs.values())

    def _free_bytes(self) -> int:
        try:
            return shutil.disk_usage(self.root).free
        except OSError:
            return 0

    def make_room(self, params: dict) -> bool:
        """Evict the oldest finished results until a new job fits the budget and the free-space floor.

        Returns False when it cannot fit even then (the caller refuses the job).
        """
        need = self.reserve_bytes(params)
        done = sorted((j for j in self.jobs.values() if j.finished is not None), key=lambda j: j.finished)
        while True:
            over_budget = self.max_disk_bytes and self.disk_bytes() + need > self.max_disk_bytes
            # Running jobs have not written everything yet: their reserve counts against free space too.
            pending = sum(self.reserve_bytes(j.params) for j in self.jobs.values() if j.finished is None)
            short = self._free_bytes() - pending - need < self.min_free_bytes
            if not (over_budget or short):
                return True
            if not done:
                return False
            self._remove(done.pop(0))

    def _enforce_budget(self) -> None:
        done = sorted((j for j in self.jobs.values() if j.finished is not None), key=lambda j: j.finished)
        while self.max_disk_bytes and done and self.disk_bytes() > self.max_disk_bytes:
            self._remove(done.pop(0))

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
            # The worker scrubs its messages; this is the second line of defence for server paths.
            job.status, job.error = "failed", scrub_paths(str(outcome.get("error") or "composing failed"), job.dir)
        for name in (*VOICE_NAMES, PRIMER_NAME):  # the uploads are not kept once used
            (job.dir / name).unlink(missing_ok=True)
        job.bytes = _tree_bytes(job.dir)
        self._enforce_budget()

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

    def sweep_disk(self) -> int:
        """At start-up: delete what earlier runs left behind; returns how many folders went.

        Every ID-shaped folder not in :attr:`jobs` belongs to a run that has ended (jobs live in memory,
        and the folder lock keeps other live servers out), so its results can no longer be fetched:
        finished or half-written, it goes, as do the workers' warm-up folders. Other names are left alone.
        """
        removed = 0
        for p in self.root.iterdir():
            if not p.is_dir() or p.is_symlink():
                continue
            if (valid_id(p.name) and p.name not in self.jobs) or p.name.startswith(WARMUP_PREFIX):
                shutil.rmtree(p, ignore_errors=True)
                removed += 1
        return removed


def _tree_bytes(folder: Path) -> int:
    """Bytes of the files directly in ``folder`` (result folders are flat)."""
    total = 0
    try:
        for f in folder.iterdir():
            with contextlib.suppress(OSError):
                total += f.lstat().st_size
    except OSError:
        pass
    return total


def own_results_dir() -> Path:
    """A fresh results folder for a server started without ``--results``.

    It is ``<tmp>/moodsong-web-<uid>/run-*``; the base is private to the user (mode 0700, checked), and
    the folders of dead servers in it are removed first (:func:`sweep_dead_runs`). Where the base cannot
    be trusted (another owner, open permissions) a plain temporary folder is used instead.
    """
    uid = os.getuid() if hasattr(os, "getuid") else 0
    base = Path(tempfile.gettempdir()) / f"moodsong-web-{uid}"
    try:
        base.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(base)
        trusted = stat.S_ISDIR(st.st_mode) and st.st_uid == uid and not st.st_mode & 0o077
    except OSError:
        trusted = False
    if not trusted or fcntl is None:
        return Path(tempfile.mkdtemp(prefix="moodsong-web-"))
    sweep_dead_runs(base)
    return Path(tempfile.mkdtemp(prefix="run-", dir=base))


def sweep_dead_runs(base: str | os.PathLike, grace_s: float = 60.0) -> int:
    """Remove the ``run-*`` folders in ``base`` whose server is gone (its lock is free); returns how many.

    A folder without a lock file is a server's that is starting right now, or that died before it
    took the lock: it goes once older than ``grace_s`` seconds.
    """
    removed = 0
    for d in Path(base).iterdir():
        if not d.name.startswith("run-") or d.is_symlink() or not d.is_dir():
            continue
        try:
            fd = os.open(d / LOCK_NAME, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            with contextlib.suppress(OSError):
                if time.time() - d.stat().st_mtime > grace_s:
                    shutil.rmtree(d, ignore_errors=True)
                    removed += 1
            continue
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)  # a live server holds it
            continue
        try:
            shutil.rmtree(d, ignore_errors=True)
            removed += 1
        finally:
            os.close(fd)
    return removed


class _Worker:
    """One ``python -m moodsong.web.worker`` process and the socket to it."""

    def __init__(self, model: str | None, threads: int, warmup: bool = True, job_limit_s: float = 0.0,
                 scratch_dir: str | os.PathLike | None = None):
        ours, theirs = socket.socketpair()
        # The worker watches this pid and the socket, and stops a job past job_limit_s itself, so it
        # never outlives the server (moodsong.web.worker).
        cmd = [sys.executable, "-m", "moodsong.web.worker", "--fd", str(theirs.fileno()), "--threads", str(threads),
               "--parent-pid", str(os.getpid()), "--job-limit", f"{float(job_limit_s):g}"]
        if model is not None:
            cmd += ["--model", str(model)]
        if not warmup:
            cmd += ["--no-warmup"]
        if scratch_dir is not None:
            cmd += ["--scratch", str(scratch_dir)]
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
        The composer: None or "song" (the shipped song model), "emotion-wavenet", "emotion-crbm", or a checkpoint path.
    warmup : bool
        Compose a tiny piece when a worker starts, so its first real job is fast.
    scratch_dir : path, optional
        Where workers warm up (``.warmup-*`` folders); the results folder, so a crash leaves nothing elsewhere.
    """

    #: Seconds past ``timeout_s`` after which a worker ends a job by itself; the server normally
    #: replaces it first, so this only acts when the server cannot (it is gone or stuck).
    WORKER_GRACE_S = 5.0

    def __init__(self, workers: int = 1, timeout_s: float = 120.0, model: str | None = None, warmup: bool = True,
                 scratch_dir: str | os.PathLike | None = None):
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.workers, self.timeout_s, self.model, self.warmup = int(workers), float(timeout_s), model, warmup
        self.scratch_dir = scratch_dir
        self._threads_per_worker = max(1, (os.cpu_count() or 1) // self.workers)
        self._idle: asyncio.Queue | None = None
        self._all: list[_Worker] = []
        self._waiters = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="moodsong-wait")

    def _spawn(self) -> _Worker:
        # Called on the event loop's thread only: Linux's parent-death signal fires when the *thread*
        # that started a worker ends, and that thread lives as long as the server.
        w = _Worker(self.model, self._threads_per_worker, self.warmup, job_limit_s=self.timeout_s + self.WORKER_GRACE_S,
                    scratch_dir=self.scratch_dir)
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
            outcome = {"ok": False,
                       "error": f"composing took longer than {self.timeout_s:g} s; try fewer bars or candidates"}
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
