"""A composer worker process: ``python -m moodsong.web.worker --fd N --parent-pid P``.

:class:`moodsong.web.jobs.ComposerPool` starts these with a socket on file
descriptor ``N``; a worker loads the models once, answers ``("ready", None)``,
then takes ``(job_dir, params)`` messages and answers ``("done", outcome)``
until it receives ``None`` or the socket closes. A fresh interpreter (not a
fork of the server) keeps the worker independent of the server's threads and
of whatever script started the server.

A worker never outlives its server. On Linux the kernel kills it when the
server dies (``prctl(PR_SET_PDEATHSIG, SIGKILL)``); everywhere a watchdog
thread ends it once its parent is no longer pid ``P`` or the server's end of
the socket has closed (checked every second, also in the middle of a job). A
job that runs past ``--job-limit`` seconds ends the process by ``SIGALRM``,
so a runaway job stops even when no server is left to replace the worker.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import select
import signal
import sys
import threading
from dataclasses import fields
from multiprocessing.connection import Connection

from moodsong.web.jobs import PRIMER_NAME, VOICE_NAMES, WARMUP_PREFIX, scrub_paths

__all__ = ["run_job", "serve_jobs", "watch_parent"]

log = logging.getLogger("moodsong.web.worker")

STEM = "piece"
#: ComposeRequest fields the server decides: files (uploads included), outputs, model, recogniser. A client
#: value for one of these never reaches the composer, whatever the API schema lets through.
SERVER_FIELDS = frozenset({"voice", "primer", "out_dir", "stem", "audio", "picture", "leadsheet", "keep", "model",
                           "voice_backend", "whisper_model"})


def run_job(job_dir: str, params: dict, model: str | None = None) -> dict:
    """Compose one request into ``job_dir``; returns ``{"ok": True, "result": ...}`` or ``{"ok": False, "error": ...}``.

    Every setting in ``params`` that :class:`~moodsong.pipeline.ComposeRequest` declares is passed on
    (except :data:`SERVER_FIELDS`), so a field the composer gains reaches it as soon as the API
    schema accepts it. Only user-caused problems (:class:`~moodsong.errors.MoodsongError`) are
    reported in their own words, without server paths; anything else becomes a generic message
    (details go to the log).
    """
    from moodsong.errors import MoodsongError
    from moodsong.pipeline import ComposeRequest, compose

    try:
        declared = {f.name: f.type for f in fields(ComposeRequest)}
        kwargs = {k: _as_declared(v, declared[k]) for k, v in params.items()
                  if k in declared and k not in SERVER_FIELDS and v is not None}
        if params.get("voice"):
            if params["voice"] not in VOICE_NAMES:
                raise MoodsongError("bad recording name")
            kwargs["voice"] = os.path.join(job_dir, params["voice"])
        if params.get("primer"):
            if params["primer"] != PRIMER_NAME:
                raise MoodsongError("bad primer name")
            kwargs["primer"] = os.path.join(job_dir, PRIMER_NAME)
        # compose() writes the MIDI, WAV, PNG and (song model) the MusicXML lead sheet itself.
        kwargs.update(keep=1, out_dir=job_dir, stem=STEM, audio="wav", picture=True, leadsheet=True, model=model)
        result = compose(ComposeRequest(**kwargs))
        chosen = result.chosen[0]
        out = result.to_dict()
        piece = out.pop("pieces")[0]
        piece.pop("paths", None)  # server paths stay on the server; the client gets URLs
        out.update(piece)
        a = result.analysis
        out["explanation"] = a.explain() if result.source in ("prompt", "voice") else (
            f"target ({result.source}): valence {a.valence:+.2f}, arousal {a.arousal:+.2f} "
            f"-> '{a.label}', Q{a.quadrant}")
        programs = getattr(getattr(chosen, "song", None), "programs", None)  # a song: melody first
        program = int(programs[0]) if programs else (
            int(chosen.score.tracks[0].program) if len(chosen.score.tracks) else result.surface.program)
        out["instrument"] = {"program": program, "name": _instrument_name(program)}
        if programs:  # the page names both parts next to the plan
            out["instruments"] = {part: {"program": int(p), "name": _instrument_name(int(p))}
                                  for part, p in zip(("melody", "accompaniment"), programs)}
        # How closely the notes follow the plan, next to the plan (also in candidates[].steering).
        out["plan_followed"] = chosen.steering.get("plan_followed")
        return {"ok": True, "result": out}
    except MoodsongError as exc:
        return {"ok": False, "error": scrub_paths(str(exc), job_dir)}
    except Exception:  # noqa: BLE001 - a worker must answer, whatever broke
        log.exception("compose job failed")
        return {"ok": False, "error": "internal error while composing; please try again"}


def _as_declared(value, annotation):
    """``value`` as the composer's field takes it: a number for a text-only field becomes its text.

    The API gives ``instrument`` as a General MIDI program number; a composer whose field
    takes instrument names (``"40"`` or ``"violin"``) gets ``"40"``. Anything else is passed as it is.
    """
    text = annotation if isinstance(annotation, str) else repr(annotation)
    names = set(re.findall(r"[A-Za-z_]\w*", text))
    if isinstance(value, (int, float)) and not isinstance(value, bool) and "str" in names \
            and not names & {"int", "float", "Any", "object"}:
        return str(value)
    return value


def _instrument_name(program: int) -> str:
    try:
        from pretty_midi import program_to_instrument_name

        return program_to_instrument_name(program)
    except Exception:  # noqa: BLE001 - a name is only decoration
        return f"program {program}"


def _warm_up(model: str | None, scratch_dir: str | None = None) -> None:
    """Compose one tiny piece end to end and transcribe a moment of silence.

    That loads every model (text included), the SoundFont, music21, matplotlib
    and the speech recogniser's request language model, so the first real
    request is as fast as the rest. The scratch folder lies in the results
    folder, whose start-up sweep removes it should this process be killed.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix=WARMUP_PREFIX, dir=scratch_dir) as tmp:
        outcome = run_job(tmp, {"prompt": "a calm and happy song", "bars": 1, "candidates": 1, "seed": 0}, model)
        if not outcome["ok"]:
            log.warning("worker warm-up failed: %s", outcome["error"])
        try:
            import numpy as np
            import soundfile as sf

            from moodsong.emotion.voice import transcribe

            sf.write(os.path.join(tmp, "silence.wav"), np.zeros(8000, np.float32), 16000)
            transcribe(os.path.join(tmp, "silence.wav"))
        except Exception:  # noqa: BLE001 - voice requests will report their own errors
            pass
        try:  # silence is refused before Whisper's model loads: load it explicitly
            from moodsong.emotion.voice import preload

            preload()
        except Exception:  # noqa: BLE001 - voice requests will report their own errors
            pass
        try:  # Chinese scenes are read by the multilingual encoder: read its weights now (about 1 s)
            from moodsong.emotion.text import MultilingualEncoder

            if MultilingualEncoder.available():
                MultilingualEncoder.encode(["夏天的海边"])
        except Exception:  # noqa: BLE001 - text requests will report their own errors
            pass


# -- never outlive the server -----------------------------------------------------------------

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def watch_parent(parent_pid: int, fd: int, interval_s: float = 1.0) -> None:
    """End this process as soon as the server (pid ``parent_pid``, the other end of socket ``fd``) is gone.

    Asks Linux to send SIGKILL when the parent dies, then starts a daemon thread that
    checks every ``interval_s`` seconds whether the parent changed (the process was
    re-parented) or the socket was closed or reset by the server's side.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no libc prctl: the watchdog alone does the job
            pass
    if os.getppid() != parent_pid:  # the server died before the kernel was asked to tell us
        os._exit(1)

    def watchdog() -> None:
        poller = select.poll()
        # POLLRDHUP: the server's end closed, seen without consuming a queued message (Linux only).
        poller.register(fd, getattr(select, "POLLRDHUP", 0) | select.POLLPRI)
        gone = getattr(select, "POLLRDHUP", 0) | select.POLLHUP | select.POLLERR | select.POLLNVAL
        while True:
            events = poller.poll(interval_s * 1000)
            if os.getppid() != parent_pid or any(ev & gone for _, ev in events):
                os._exit(1)

    threading.Thread(target=watchdog, name="moodsong-parent-watch", daemon=True).start()


def serve_jobs(conn: Connection, model: str | None, threads: int, warmup: bool = True, job_limit_s: float = 0.0,
               scratch_dir: str | None = None) -> None:
    """A worker process: (optionally) warm up, then compose jobs from ``conn`` until told to stop.

    ``job_limit_s`` (seconds, 0: none) bounds each job: past it SIGALRM ends the process.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle
    signal.signal(signal.SIGALRM, signal.SIG_DFL)  # the job time limit ends the process, even inside C code
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s worker %(process)d: %(message)s")
    import torch

    torch.set_num_threads(max(1, threads))
    if warmup:
        _warm_up(model, scratch_dir)
    conn.send(("ready", None))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        job_dir, params = msg
        if job_limit_s > 0:
            signal.setitimer(signal.ITIMER_REAL, job_limit_s)
        outcome = run_job(job_dir, params, model)
        signal.setitimer(signal.ITIMER_REAL, 0)
        conn.send(("done", outcome))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="moodsong composer worker (started by moodsong serve)")
    parser.add_argument("--fd", type=int, required=True, help="socket file descriptor to the server")
    parser.add_argument("--parent-pid", type=int, default=None, help="the server's pid; the worker ends with it")
    parser.add_argument("--job-limit", type=float, default=0.0, help="seconds one job may take (0: no limit)")
    parser.add_argument("--scratch", default=None, help="folder for the warm-up piece (default: the temp folder)")
    parser.add_argument("--model", default=None,
                        help="song (default), emotion-wavenet, emotion-crbm, or a checkpoint path")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--no-warmup", action="store_true", help="load models on the first job instead of at start")
    args = parser.parse_args(argv)
    if args.parent_pid is not None:
        watch_parent(args.parent_pid, args.fd)
    serve_jobs(Connection(args.fd), args.model or None, args.threads, warmup=not args.no_warmup,
               job_limit_s=args.job_limit, scratch_dir=args.scratch)


if __name__ == "__main__":
    main()
