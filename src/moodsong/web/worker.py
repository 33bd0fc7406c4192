"""A composer worker process: ``python -m moodsong.web.worker --fd N``.

:class:`moodsong.web.jobs.ComposerPool` starts these with a socket on file
descriptor ``N``; a worker loads the models once, answers ``("ready", None)``,
then takes ``(job_dir, params)`` messages and answers ``("done", outcome)``
until it receives ``None`` or the socket closes. A fresh interpreter (not a
fork of the server) keeps the worker independent of the server's threads and
of whatever script started the server.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
from multiprocessing.connection import Connection

__all__ = ["run_job", "serve_jobs"]

log = logging.getLogger("moodsong.web.worker")

STEM = "piece"
VOICE_NAMES = ("voice.wav", "voice.flac", "voice.ogg")  # the only recording names the server writes


def run_job(job_dir: str, params: dict, model: str | None = None) -> dict:
    """Compose one request into ``job_dir``; returns ``{"ok": True, "result": ...}`` or ``{"ok": False, "error": ...}``.

    Only user-caused problems (:class:`~moodsong.errors.MoodsongError`) are reported
    in their own words; anything else becomes a generic message (details go to the log).
    """
    from dataclasses import fields

    from ..compose import ComposeRequest, compose
    from ..errors import MoodsongError

    try:
        known = {f.name for f in fields(ComposeRequest)}
        voice = None
        if params.get("voice"):
            if params["voice"] not in VOICE_NAMES:
                raise MoodsongError("bad recording name")
            voice = os.path.join(job_dir, params["voice"])
        kwargs = dict(
            prompt=params.get("prompt"), voice=voice, valence=params.get("valence"), arousal=params.get("arousal"),
            quadrant=params.get("quadrant"), bars=params["bars"], candidates=params["candidates"], keep=1,
            seed=params.get("seed"), out_dir=None, stem=STEM, audio="wav", picture=True, model=model,
        )
        # Settings the composer takes itself are passed on; tempo and instrument otherwise
        # override the steered surface of the chosen piece before it is written.
        overrides = {}
        for name, aliases in (("tempo", ("tempo", "qpm")), ("instrument", ("instrument", "program")),
                              ("temperature", ("temperature",))):
            if params.get(name) is None:
                continue
            target = next((a for a in aliases if a in known), None)
            if target is not None:
                kwargs[target] = params[name]
            else:
                overrides[name] = params[name]
        result = compose(ComposeRequest(**kwargs))
        chosen = result.chosen[0]
        score = chosen.score
        if "tempo" in overrides:
            import symusic

            score.tempos.clear()
            score.tempos.append(symusic.Tempo(0, float(overrides["tempo"])))
        if "instrument" in overrides:
            for track in score.tracks:
                track.program, track.is_drum = int(overrides["instrument"]), False
        from ..outputs import write_piece

        a = result.analysis
        qpm = float(score.tempos[0].qpm) if len(score.tempos) else result.surface.qpm
        title = f"{a.label} (V {a.valence:+.2f}, A {a.arousal:+.2f}) - {chosen.steering.get('key') or ''}, {qpm:g} qpm"
        result.reports.append(write_piece(score, job_dir, STEM, audio="wav", picture=True, title=title))
        out = result.to_dict()
        piece = out.pop("pieces")[0]
        piece.pop("paths", None)  # server paths stay on the server; the client gets URLs
        out.update(piece)
        out["explanation"] = a.explain() if result.source in ("prompt", "voice") else (
            f"target ({result.source}): valence {a.valence:+.2f}, arousal {a.arousal:+.2f} -> '{a.label}', Q{a.quadrant}")
        program = int(score.tracks[0].program) if len(score.tracks) else result.surface.program
        out["instrument"] = {"program": program, "name": _instrument_name(program)}
        return {"ok": True, "result": out}
    except MoodsongError as exc:
        return {"ok": False, "error": str(exc)}
    except Exception:  # noqa: BLE001 - a worker must answer, whatever broke
        log.exception("compose job failed")
        return {"ok": False, "error": "internal error while composing; please try again"}


def _instrument_name(program: int) -> str:
    try:
        from pretty_midi import program_to_instrument_name

        return program_to_instrument_name(program)
    except Exception:  # noqa: BLE001 - a name is only decoration
        return f"program {program}"


def _warm_up(model: str | None) -> None:
    """Compose one tiny piece end to end and transcribe a moment of silence.

    That loads every model (text included), the SoundFont, music21, matplotlib
    and the speech recogniser's request language model, so the first real
    request is as fast as the rest.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="moodsong-warmup-") as tmp:
        outcome = run_job(tmp, {"prompt": "a calm and happy song", "bars": 1, "candidates": 1, "seed": 0}, model)
        if not outcome["ok"]:
            log.warning("worker warm-up failed: %s", outcome["error"])
        try:
            import numpy as np
            import soundfile as sf

            from ..emotion.voice import transcribe

            sf.write(os.path.join(tmp, "silence.wav"), np.zeros(8000, np.float32), 16000)
            transcribe(os.path.join(tmp, "silence.wav"))
        except Exception:  # noqa: BLE001 - voice requests will report their own errors
            pass


def serve_jobs(conn: Connection, model: str | None, threads: int, warmup: bool = True) -> None:
    """A worker process: (optionally) warm up, then compose jobs from ``conn`` until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s worker %(process)d: %(message)s")
    import torch

    torch.set_num_threads(max(1, threads))
    if warmup:
        _warm_up(model)
    conn.send(("ready", None))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        job_dir, params = msg
        conn.send(("done", run_job(job_dir, params, model)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="moodsong composer worker (started by moodsong serve)")
    parser.add_argument("--fd", type=int, required=True, help="socket file descriptor to the server")
    parser.add_argument("--model", default=None, help="emotion-conditional model checkpoint path without suffix")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--no-warmup", action="store_true", help="load models on the first job instead of at start")
    args = parser.parse_args(argv)
    serve_jobs(Connection(args.fd), args.model or None, args.threads, warmup=not args.no_warmup)


if __name__ == "__main__":
    main()
