"""Compose a song that fits a feeling: the whole pipeline as one library call.

    request (prompt | voice | valence/arousal | quadrant)
      -> target emotion (text/voice analysis, or the given coordinates)
      -> the song model (default; :mod:`moodsong.song`): a harmonic plan chosen for the emotion,
         then a melody and an accompaniment over it, with form; several candidates in one batch
      -> selection: the music-emotion estimator scores every candidate; keep those closest to the target
      -> outputs: multi-track MIDI + audio + piano-roll picture + MusicXML lead sheet, plan/key/tempo report

The earlier emotion-conditional piano models (a WaveNet-NADE, default ``model="emotion-wavenet"``,
and a conditional RBM, ``"emotion-crbm"``) stay available through ``model``; their pieces are
surface-steered (tempo, register, mode, density, articulation, velocity, instrument).

:func:`compose` is what both ``moodsong compose`` and the web server call.

Example
-------
>>> from moodsong.pipeline import ComposeRequest, compose            # doctest: +SKIP
>>> result = compose(ComposeRequest(prompt="hope and wonder", out_dir="out", seed=1))  # doctest: +SKIP
>>> result.chosen[0].estimate.quadrant                               # doctest: +SKIP
1
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from moodsong.emotion import (
    EmotionAnalysis,
    analysis_from_va,
    clip_va,
    quadrant_center,
    quadrant_of,
)
from moodsong.emotion.music import MusicEmotion, MusicEmotionEstimator
from moodsong.emotion.steer import SurfaceParams, surface_for
from moodsong.errors import MoodsongError

if TYPE_CHECKING:  # the conditional piano models need torch; the default song model does not
    import symusic
    import torch

    from moodsong.emotion.voice import Transcript
    from moodsong.models.conditional_rbm import ConditionalRBM
    from moodsong.models.wavenet import WaveNetNADE

    ConditionalModel = ConditionalRBM | WaveNetNADE

__all__ = ["ComposeRequest", "Candidate", "ComposeResult", "compose", "load_conditional_model", "generate_candidates",
           "generate_song_candidates", "sample_conditional", "default_strength", "parse_instruments", "MODEL_NAMES",
           "is_song_model"]

#: Stems of the shipped emotion-conditional models inside ``moodsong/data``: the default
#: (a WaveNet-NADE whose every block and output sees the condition) and the RBM it replaced.
DEFAULT_CONDITIONAL = "emotion_wavenet"
DEFAULT_CRBM = "emotion_crbm"
STEPS_PER_BAR = 16  # 4/4 at sixteenth-note steps
#: Condition scale of the conditional RBM (1 = the learned conditional; 3 exaggerates the emotion-specific
#: biases, which roughly doubles the onset-rate gap between high- and low-arousal targets; docs/emotion-music.md).
DEFAULT_STRENGTH = 3.0
#: The same for the conditional WaveNet-NADE: u + 3 (w - u) of the uniform weights u and the target's w.
#: Its learned condition is subtle (EMOPIA labels whole clips); at 3 the onset rate of high-arousal targets
#: is 3-6x that of low-arousal ones and bare hits rise from 0.25 to 0.38 (bench/emotion_compose.py).
DEFAULT_WAVENET_STRENGTH = 3.0
#: Names ``model`` accepts besides a checkpoint path.
MODEL_NAMES = {"song": None, "emotion-wavenet": DEFAULT_CONDITIONAL, "emotion-crbm": DEFAULT_CRBM}


@dataclass
class ComposeRequest:
    """What to compose. Give exactly one source of emotion (prompt, voice, coordinates or quadrant).

    Attributes
    ----------
    prompt : str, optional
        Free text (English or Chinese), e.g. ``"a song of hope and wonder"``.
    voice : path, optional
        A spoken request (WAV/FLAC/OGG); transcribed, then analysed as text.
    valence, arousal : float, optional
        Explicit target in [-1, 1] (a missing one counts as 0).
    quadrant : int, optional
        1..4; the quadrant's centre is the target.
    bars : int
        Length in 4/4 bars.
    candidates : int
        Pieces generated; the estimator picks among them.
    keep : int
        How many of the best candidates to write.
    seed : int, optional
        Makes the result reproducible.
    out_dir : path, optional
        Where to write files; None writes nothing (scores only).
    stem : str
        File name stem (``<stem>.mid`` ...; ``<stem>-2`` for the second kept piece).
    audio : str or None
        ``"wav"``, ``"flac"``, ``"ogg"``, ``"mp3"`` or None.
    picture : bool
        Write the piano-roll PNG.
    model : str or path, optional
        ``None`` or ``"song"``: the shipped song model; ``"emotion-wavenet"`` / ``"emotion-crbm"``: the
        earlier emotion-conditional piano models; or a checkpoint path (a song model from
        ``moodsong train-song``, a WaveNet-NADE with a 4-number quadrant condition, or a conditional RBM).
    steer : bool
        Song model: choose among the candidates with the music-emotion estimator (off: the bare
        model, one candidate as sampled). Piano models: surface steering and selection.
    form : str, optional
        Song model: section letters such as ``"AABA"`` or ``"A A' B A"`` (default by length).
    key : str, optional
        Song model: e.g. ``"D minor"`` instead of the key the emotion chose.
    tempo : float, optional
        Quarter notes per minute instead of the tempo the emotion chose (20-300).
    instrument : str, optional
        General MIDI instrument names or program numbers, ``"MELODY[,ACCOMPANIMENT]"``,
        e.g. ``"flute,acoustic grand piano"`` or ``"violin"``.
    primer : path, optional
        Song model: a MIDI file to continue; its notes are kept verbatim as the first bars.
    leadsheet : bool
        Song model: also write ``<stem>.musicxml`` (melody and chord symbols).
    strength : float, optional
        How far the condition is pushed: 1 is the learned conditional, more exaggerates it
        (see :func:`sample_conditional`). Default: the model's own (:func:`default_strength`).
    temperature : float
        Sampling temperature: above 1 wilder, below 1 safer.
    voice_backend, whisper_model
        Speech recogniser for ``voice`` (see :func:`moodsong.emotion.voice.transcribe`).
    """

    prompt: str | None = None
    voice: str | os.PathLike | None = None
    valence: float | None = None
    arousal: float | None = None
    quadrant: int | None = None
    bars: int = 16
    candidates: int = 6
    keep: int = 1
    seed: int | None = None
    out_dir: str | os.PathLike | None = None
    stem: str = "moodsong"
    audio: str | None = "wav"
    picture: bool = True
    model: str | os.PathLike | None = None
    steer: bool = True
    strength: float | None = None
    temperature: float = 1.0
    voice_backend: str = "auto"
    whisper_model: str | os.PathLike | None = None
    form: str | None = None
    key: str | None = None
    tempo: float | None = None
    instrument: str | None = None
    primer: str | os.PathLike | None = None
    leadsheet: bool = True


@dataclass
class Candidate:
    """One generated piece and how it was judged."""

    index: int
    seed: int
    estimate: MusicEmotion
    distance: float  # Euclidean distance of the estimate to the target on the V/A plane
    target_probability: float  # the estimator's probability of the target quadrant
    steering: dict = field(default_factory=dict)
    chosen: bool = False
    score: symusic.Score | None = field(default=None, repr=False)
    song: object = field(default=None, repr=False)  # moodsong.song.model.Song for the song model

    def to_dict(self) -> dict:
        est = self.estimate.to_dict()
        return {
            "index": self.index,
            "seed": self.seed,
            "estimate": {k: est[k] for k in ("valence", "arousal", "quadrant", "probabilities")},
            "distance": round(self.distance, 4),
            "target_probability": round(self.target_probability, 4),
            "steering": self.steering,
            "chosen": self.chosen,
        }


@dataclass
class ComposeResult:
    """Everything :func:`compose` understood and made (``to_dict()`` is JSON-able)."""

    analysis: EmotionAnalysis
    source: str  # "prompt", "voice", "coordinates" or "quadrant"
    transcript: str | None
    surface: SurfaceParams
    candidates: list[Candidate]
    reports: list = field(default_factory=list)  # moodsong.render.outputs.PieceReport per kept piece
    model_kind: str = "song"  # "song" (plan, melody, accompaniment) or "piano" (a conditional piano model)
    also_heard: list[str] = field(default_factory=list)  # the request's second hearings (Transcript.alternatives)

    @property
    def target(self) -> tuple[float, float]:
        return self.analysis.valence, self.analysis.arousal

    @property
    def chosen(self) -> list[Candidate]:
        return sorted((c for c in self.candidates if c.chosen), key=lambda c: c.distance - c.target_probability)

    @property
    def paths(self) -> list[dict]:
        return [{k: (str(v) if v is not None else None) for k, v in r.paths.items()} for r in self.reports]

    def to_dict(self) -> dict:
        return {
            "analysis": self.analysis.to_dict(),
            "source": self.source,
            "transcript": self.transcript,
            "also_heard": self.also_heard,
            "target": {
                "valence": round(self.analysis.valence, 4),
                "arousal": round(self.analysis.arousal, 4),
                "quadrant": self.analysis.quadrant,
                "label": self.analysis.label,
            },
            "model": self.model_kind,
            "surface": self.surface.to_dict() if self.model_kind == "piano" else None,
            "plans": [_song_dict(c.song) for c in self.chosen if c.song is not None],
            "candidates": [c.to_dict() for c in self.candidates],
            "chosen": [c.index for c in self.chosen],
            "pieces": [
                {
                    "paths": p,
                    "chords": r.chords,
                    "key": r.key,
                    "tempo_qpm": r.tempo_qpm,
                    "duration_s": round(r.duration_s, 2),
                    **({"plan": _song_dict(c.song)} if c.song is not None else {}),
                }
                for p, r, c in zip(self.paths, self.reports, self.chosen)
            ],
        }

    def summary(self) -> str:
        """What it understood and what it made, for the terminal."""
        a = self.analysis
        lines = []
        if self.transcript is not None:
            lines.append(f"heard: {self.transcript!r}")
            lines += [f"  and, played slower: {alt!r}" for alt in self.also_heard]
        lines.append(a.explain() if self.source in ("prompt", "voice") else (
            f"target ({self.source}): valence {a.valence:+.2f}, arousal {a.arousal:+.2f} "
            f"-> '{a.label}', Q{a.quadrant}"))
        if self.model_kind == "piano":
            s = self.surface
            lines.append(
                f"steering: {s.qpm:g} qpm, {s.mode or 'free'} mode, register ~{s.register_mean:g}, "
                f"density {s.keep_fraction:.0%}, velocity {s.velocity}, {s.instrument}"
            )
        for c in self.chosen:
            if c.song is not None:
                lines.append(_song_plan_text(c.song))
                f = c.steering.get("plan_followed")
                if f:
                    note = "" if f["fraction"] >= 0.8 else "  (the notes stray from the plan; see --json 'differ')"
                    lines.append(f"      the accompaniment is heard as the plan in {f['agree']} of {f['bars']} "
                                 f"bars{note}")
        lines.append("candidates (estimated by the music-emotion model; "
                     f"target V {a.valence:+.2f} A {a.arousal:+.2f}):")
        for c in self.candidates:
            e = c.estimate
            mark = "*" if c.chosen else " "
            lines.append(
                f" {mark} #{c.index} V {e.valence:+.2f} A {e.arousal:+.2f} Q{e.quadrant} "
                f"P(Q{a.quadrant}) {c.target_probability:.2f} dist {c.distance:.2f}  key {c.steering.get('key')}"
            )
        for r in self.reports:
            lines.append(r.summary())
        return "\n".join(lines)


def _program_name(program: int) -> str:
    return gm_names()[program] if 0 <= program < 128 else f"program {program}"


@lru_cache(maxsize=1)
def gm_names() -> tuple[str, ...]:
    """The 128 General MIDI instrument names, from pretty_midi's table.

    Only ``pretty_midi/constants.py`` is loaded: importing the package runs its FluidSynth
    search and more, 0.35 s of a cold compose, for a table of names.
    """
    import importlib.util

    spec = importlib.util.find_spec("pretty_midi")
    path = os.path.join(os.path.dirname(spec.origin), "constants.py")
    mod_spec = importlib.util.spec_from_file_location("_moodsong_gm_constants", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return tuple(module.INSTRUMENT_MAP)


def _song_dict(song) -> dict:
    return {"key": song.key_name, "tempo_qpm": song.qpm, "bars": song.bars, "form": song.form,
            "sections": [{"section": s, "start_bar": b + 1, "bars": n} for s, b, n in song.sections],
            "chords": song.plan_dicts(), "bar_chords": song.bar_chords(),
            "instruments": {"melody": song.programs[0], "accompaniment": song.programs[1]},
            "primer_bars": song.primer_bars}


def _song_plan_text(song, per_line: int = 8) -> str:
    """The harmonic plan and form, bar by bar, for the terminal."""
    bars = song.bar_chords()
    sec_at = {b: s for s, b, _ in song.sections}
    cells = [(f"[{sec_at[i]}] " if i in sec_at else "") + c for i, c in enumerate(bars)]
    rows = [" | ".join(cells[i: i + per_line]) for i in range(0, len(cells), per_line)]
    head = (f"plan: {song.key_name}, {song.qpm:g} qpm, {song.bars} bars, form {song.form}; "
            f"melody {_program_name(song.programs[0])}, accompaniment {_program_name(song.programs[1])}")
    return head + "\n" + "\n".join("      " + r for r in rows)


# -- models ----------------------------------------------------------------------


@lru_cache(maxsize=4)
def load_conditional_model(path: str | None = None) -> ConditionalModel:
    """The shipped emotion-conditional model, or the one at ``path`` (without suffix).

    Raises
    ------
    MoodsongError
        If the file is missing or corrupt, or holds a model that takes no emotion condition.
    """
    from moodsong.models.checkpoint import load_checkpoint
    from moodsong.models.conditional_rbm import ConditionalRBM
    from moodsong.models.wavenet import WaveNetNADE

    if path is None:
        from importlib import resources

        path = str(resources.files("moodsong") / "data" / DEFAULT_CONDITIONAL)
    path = str(path).removesuffix(".json").removesuffix(".safetensors")
    model, _, _ = load_checkpoint(path)
    if isinstance(model, ConditionalRBM):
        return model
    if isinstance(model, WaveNetNADE) and model.config.cond_dim == 4:
        return model.eval()
    raise MoodsongError(f"{path}: not an emotion-conditional model (a conditional RBM, or a WaveNet-NADE with a "
                        f"4-number quadrant condition)")


def default_strength(model: ConditionalModel) -> float:
    """The condition strength :func:`compose` uses for ``model`` unless told otherwise."""
    from moodsong.models.wavenet import WaveNetNADE

    return DEFAULT_WAVENET_STRENGTH if isinstance(model, WaveNetNADE) else DEFAULT_STRENGTH


def sample_conditional(model: ConditionalModel, valence: float, arousal: float, num_steps: int, *,
                       strength: float | None = None, temperature: float = 1.0,
                       generator: torch.Generator | None = None) -> np.ndarray:
    """A note-state matrix of ``num_steps`` 16th-note steps conditioned on a (valence, arousal) target.

    The condition is the target's soft quadrant weights (:func:`condition_vector`). For a
    WaveNet-NADE, ``strength`` s feeds ``u + s (w - u)`` (``u`` the uniform weights the model
    learned as "no particular emotion"), so s > 1 extrapolates away from neutral; for the RBM it
    scales the condition's biases (:func:`~moodsong.models.conditional_rbm.sample_roll`).
    """
    from moodsong.models.conditional_rbm import condition_vector, sample_roll
    from moodsong.models.wavenet import WaveNetNADE

    cond = condition_vector(valence, arousal)
    strength = default_strength(model) if strength is None else float(strength)
    if isinstance(model, WaveNetNADE):
        u = np.full(4, 0.25)
        return model.generate_roll(num_steps, cond=(u + strength * (cond - u)).astype(np.float32),
                                   temperature=temperature, generator=generator)
    return sample_roll(model, cond, num_steps, strength=strength, temperature=temperature, generator=generator)


@lru_cache(maxsize=1)
def _estimator() -> MusicEmotionEstimator:
    return MusicEmotionEstimator.load_default()


# -- pipeline --------------------------------------------------------------------


def resolve_emotion(req: ComposeRequest) -> tuple[EmotionAnalysis, str, Transcript | None]:
    """The target emotion of a request: ``(analysis, source, transcript or None)``."""
    given = [req.prompt is not None, req.voice is not None, req.valence is not None or req.arousal is not None,
             req.quadrant is not None]
    if sum(given) == 0:
        raise MoodsongError("say what to compose: a prompt, --voice FILE, --valence/--arousal or --quadrant")
    if sum(given) > 1:
        raise MoodsongError("give only one of: a prompt, --voice, --valence/--arousal, --quadrant")
    if req.quadrant is not None:
        if req.quadrant not in (1, 2, 3, 4):
            raise MoodsongError(f"quadrant must be 1, 2, 3 or 4, not {req.quadrant}")
        v, a = quadrant_center(int(req.quadrant))
        return analysis_from_va(v, a, text=f"quadrant {req.quadrant}"), "quadrant", None
    if req.valence is not None or req.arousal is not None:
        v = 0.0 if req.valence is None else float(req.valence)
        a = 0.0 if req.arousal is None else float(req.arousal)
        if not (-1 <= v <= 1 and -1 <= a <= 1):
            raise MoodsongError(f"valence and arousal must be in [-1, 1] (got {v:g}, {a:g})")
        return analysis_from_va(clip_va(v), clip_va(a)), "coordinates", None
    from moodsong.emotion.text import analyze_text

    if req.voice is not None:
        from moodsong.emotion.voice import transcribe

        transcript = transcribe(req.voice, backend=req.voice_backend, model_path=req.whisper_model)
        return transcript.analyze(req.voice), "voice", transcript
    return analyze_text(req.prompt), "prompt", None


def generate_candidates(
    valence: float,
    arousal: float,
    *,
    bars: int = 8,
    count: int = 6,
    seed: int = 0,
    model: ConditionalModel | None = None,
    steer: bool = True,
    strength: float | None = None,
    temperature: float = 1.0,
    estimator: MusicEmotionEstimator | None = None,
) -> tuple[SurfaceParams, list[Candidate]]:
    """Sample ``count`` pieces for a target and judge each with the estimator (nothing is written).

    Candidate ``i`` uses seed ``seed + i``; so a candidate can be regenerated alone.
    """
    import torch

    from moodsong.emotion.steer import apply_surface

    model = model or load_conditional_model()
    estimator = estimator or _estimator()
    surface = surface_for(valence, arousal)
    target_q = quadrant_of(valence, arousal)
    cfg = model.config.pianoroll
    out = []
    for i in range(count):
        s = seed + i
        g = torch.Generator().manual_seed(s)
        roll = sample_conditional(model, valence, arousal, bars * STEPS_PER_BAR, strength=strength,
                                  temperature=temperature, generator=g)
        if steer:
            score, info = apply_surface(roll, surface, cfg, rng=np.random.default_rng(s))
        else:
            from moodsong.representation.pianoroll import roll_to_score

            score, info = roll_to_score(roll, cfg, qpm=120.0, velocity=80), {}
        try:
            est = estimator.predict_score(score)
        except MoodsongError:  # an (almost) silent sample: judged as far as possible from everything
            est = MusicEmotion(0.0, 0.0, 0, [0.25] * 4)
            score = None
        dist = float(np.hypot(est.valence - valence, est.arousal - arousal))
        out.append(Candidate(i + 1, s, est, dist, est.probabilities[target_q - 1], info, score=score))
    return surface, out


def parse_instruments(text: str | int) -> tuple[int, int | None]:
    """``"flute,acoustic grand piano"`` or ``"40"`` -> General MIDI programs (melody, accompaniment or None).

    A name matches a General MIDI instrument exactly (any case), else the first one that contains it
    (``"piano"`` is Acoustic Grand Piano, ``"guitar"`` Acoustic Guitar (nylon)).

    Raises
    ------
    MoodsongError
        For a name no General MIDI instrument matches, or a number outside 0-127.
    """
    names = [n.lower() for n in gm_names()]
    out = []
    text = str(text)
    parts = [p.strip() for p in text.split(",")]
    if not 1 <= len(parts) <= 2 or not all(parts):
        raise MoodsongError(f"bad instrument {text!r}: give MELODY or MELODY,ACCOMPANIMENT "
                            "(General MIDI names or 0-127)")
    for part in parts:
        if part.isdigit():
            if not 0 <= int(part) <= 127:
                raise MoodsongError(f"instrument program {part} is outside 0-127")
            out.append(int(part))
            continue
        low = part.lower()
        match = names.index(low) if low in names else next((i for i, n in enumerate(names) if low in n), None)
        if match is None:
            raise MoodsongError(f"unknown instrument {part!r}; use a General MIDI name such as 'flute', 'violin', "
                                f"'acoustic grand piano', or a program number 0-127")
        out.append(match)
    return out[0], (out[1] if len(out) > 1 else None)


@lru_cache(maxsize=2)
def _song_model(path: str | None = None):
    from moodsong.song.model import SongModel

    return SongModel.load(path)


def is_song_model(model: str | os.PathLike | None) -> bool:
    """Whether ``ComposeRequest.model`` names the song model (the default) or a piano model."""
    if model is None or str(model) == "song":
        return True
    if str(model) in MODEL_NAMES:
        return False
    import json
    from pathlib import Path

    stem = str(model).removesuffix(".json").removesuffix(".safetensors")
    try:
        doc = json.loads(Path(stem + ".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise MoodsongError(f"{model}: no such model (a name: song, emotion-wavenet, emotion-crbm; or a "
                            f"checkpoint's .json)") from None
    return isinstance(doc, dict) and doc.get("model_type") == "song"


def generate_song_candidates(
    valence: float,
    arousal: float,
    *,
    spec=None,
    count: int = 6,
    seed: int = 0,
    model=None,
    primer=None,
    estimator: MusicEmotionEstimator | None = None,
) -> list[Candidate]:
    """Sample ``count`` songs for a target in one batch and judge each with the estimator (nothing is written).

    Parameters
    ----------
    spec : moodsong.song.model.SongSpec, optional
        Length, form, key, tempo, instruments; its valence/arousal are replaced by the target.
    model : moodsong.song.model.SongModel, optional
        Default: the shipped one.
    primer : symusic.Score, optional
        A piece to continue (see :meth:`~moodsong.song.model.SongModel.generate`).
    """
    from dataclasses import replace

    from moodsong.song.model import SongSpec

    model = model or _song_model()
    estimator = estimator or _estimator()
    spec = replace(spec or SongSpec(), valence=valence, arousal=arousal)
    songs = model.generate(spec, count=count, seed=seed, primer=primer)
    target_q = quadrant_of(valence, arousal)
    out = []
    for i, song in enumerate(songs):
        score = song.to_score()
        est = estimator.predict_score(score)
        dist = float(np.hypot(est.valence - valence, est.arousal - arousal))
        info = {"key": song.key_name, "qpm": song.qpm, "form": song.form, "programs": list(song.programs)}
        out.append(Candidate(i + 1, seed, est, dist, est.probabilities[target_q - 1], info, score=score, song=song))
    return out


def compose(request: ComposeRequest) -> ComposeResult:
    """Run the whole pipeline for one request; writes files when ``request.out_dir`` is set.

    Raises
    ------
    MoodsongError
        A bad request (no/conflicting emotion source, bad prompt, audio or primer file, unknown key,
        instrument or form, out-of-range numbers) or an unreadable model.
    """
    if not 1 <= request.bars <= 256:
        raise MoodsongError(f"bars must be 1..256, not {request.bars}")
    if not 1 <= request.candidates <= 64:
        raise MoodsongError(f"candidates must be 1..64, not {request.candidates}")
    if request.strength is not None and not 0 <= request.strength <= 10:
        raise MoodsongError(f"strength must be 0..10, not {request.strength:g}")
    if not 1 <= request.keep <= request.candidates:
        raise MoodsongError(f"keep must be 1..candidates ({request.candidates}), not {request.keep}")
    if request.tempo is not None and not 20 <= request.tempo <= 300:
        raise MoodsongError(f"tempo must be 20..300 qpm, not {request.tempo:g}")
    song_mode = is_song_model(request.model)
    programs = parse_instruments(request.instrument) if request.instrument is not None else None
    spec = primer = None
    if song_mode:
        from moodsong.song.model import SongSpec, parse_form, parse_key

        if request.key is not None:
            parse_key(request.key)
        parse_form(request.form, request.bars)  # an impossible form fails before any work
        if request.primer is not None:
            primer = _read_primer_file(request.primer)
        spec = SongSpec(bars=request.bars, form=request.form, key=request.key, tempo_qpm=request.tempo,
                        temperature=request.temperature)
    elif request.key is not None or request.form is not None or request.primer is not None:
        raise MoodsongError("--key, --form and --primer need the song model (leave out --model)")
    analysis, source, transcript = resolve_emotion(request)
    seed = int(np.random.SeedSequence().entropy % 2**31) if request.seed is None else int(request.seed)
    surface = surface_for(analysis.valence, analysis.arousal)
    if song_mode:
        from dataclasses import replace

        from moodsong.song.model import INSTRUMENTS

        if programs is not None:
            default = INSTRUMENTS[quadrant_of(analysis.valence, analysis.arousal)]
            spec = replace(spec, programs=(programs[0], default[1] if programs[1] is None else programs[1]))
        model = _song_model(None if request.model in (None, "song") else str(request.model))
        count = request.candidates if request.steer else 1
        cands = generate_song_candidates(analysis.valence, analysis.arousal, spec=spec, count=count, seed=seed,
                                         model=model, primer=primer)
    else:
        model = load_conditional_model(MODEL_NAMES.get(str(request.model)) and _shipped(MODEL_NAMES[str(request.model)])
                                       or str(request.model))
        surface, cands = generate_candidates(
            analysis.valence, analysis.arousal, bars=request.bars, count=request.candidates, seed=seed,
            model=model, steer=request.steer, strength=request.strength, temperature=request.temperature,
        )
        if request.tempo is not None or programs is not None:
            for c in cands:
                if c.score is not None:
                    _override_surface(c.score, request.tempo, programs)
    usable = [c for c in cands if c.score is not None]
    if not usable:
        raise MoodsongError("every candidate came out silent; try another --seed or more --candidates")
    # Selection. Piano pieces: most probable target quadrant first, then closest on the plane.
    # Songs: the first candidates the estimator hears in the target quadrant (then as for pieces).
    # Taking the most typical-sounding song instead picked caricatures of each quadrant (the
    # sparsest, most repetitive), further from real songs than the model's own samples.
    def rank(c):
        if song_mode:
            return (c.estimate.quadrant != target_q, 0.0 if c.estimate.quadrant == target_q else
                    c.distance - c.target_probability, c.index)
        return (0, c.distance - c.target_probability, c.index)

    target_q = quadrant_of(analysis.valence, analysis.arousal)
    for c in sorted(usable, key=rank)[: min(request.keep, len(usable))]:
        c.chosen = True
        if c.song is not None:
            c.steering["plan_followed"] = _plan_followed(c.song, c.score)
    result = ComposeResult(analysis, source, None if transcript is None else transcript.text, surface, cands,
                           model_kind="song" if song_mode else "piano",
                           also_heard=[] if transcript is None else list(transcript.alternatives))
    if request.out_dir is not None:
        from moodsong.render.outputs import write_piece

        for rank, c in enumerate(result.chosen):
            stem = request.stem if rank == 0 else f"{request.stem}-{rank + 1}"
            if c.song is not None:
                song = c.song
                title = (f"{analysis.label} (V {analysis.valence:+.2f}, A {analysis.arousal:+.2f}) - "
                         f"{song.key_name}, {song.qpm:g} qpm")
                report = write_piece(c.score, request.out_dir, stem, audio=request.audio, picture=request.picture,
                                     title=title, chords=song.bar_chords(), key=song.key_name)
                if request.leadsheet:
                    from pathlib import Path

                    from moodsong.render.leadsheet import write_leadsheet

                    report.paths["musicxml"] = write_leadsheet(song, Path(request.out_dir) / f"{stem}.musicxml",
                                                               title=title)
            else:
                title = (f"{analysis.label} (V {analysis.valence:+.2f}, A {analysis.arousal:+.2f}) - "
                         f"{c.steering.get('key', '')}, {surface.qpm:g} qpm")
                report = write_piece(c.score, request.out_dir, stem, audio=request.audio, picture=request.picture,
                                     title=title)
            result.reports.append(report)
    return result


def _plan_followed(song, score) -> dict:
    """How many bars' accompaniment chord recognition hears as the planned chord (reported, never hidden)."""
    from moodsong.evaluation.songs import compare_plan

    acc = score.copy()
    acc.tracks = [t for t in acc.tracks if t.name != "Melody"]
    first = song.primer_bars * 16  # the primer's own bars are the user's music, not the plan's realisation
    plan = [(int(c.start), name) for c, name in zip(song.plan, song.chord_names()) if c.start >= first]
    rows = [r for r in compare_plan(acc, plan) if r.bar >= song.primer_bars]
    agree = sum(r.agree for r in rows)
    return {"bars": len(rows), "agree": int(agree), "fraction": round(agree / max(len(rows), 1), 3),
            "differ": [{"bar": r.bar + 1, "planned": r.planned, "heard": r.heard} for r in rows if not r.agree][:16]}


def _shipped(stem: str) -> str:
    from importlib import resources

    return str(resources.files("moodsong") / "data" / stem)


def _read_primer_file(path: str | os.PathLike):
    """The primer as a symusic score, or one clear error (not MIDI, empty, drums only)."""
    from pathlib import Path

    import symusic

    p = Path(path)
    if not p.is_file():
        raise MoodsongError(f"{p}: no such primer file")
    try:
        score = symusic.Score(str(p))
    except Exception:  # symusic raises RuntimeError / ValueError on anything that is not MIDI
        raise MoodsongError(f"{p}: not a MIDI file") from None
    if not any(len(t.notes) and not t.is_drum for t in score.tracks):
        raise MoodsongError(f"{p}: the primer has no pitched notes (empty or drums only)")
    return score


def _override_surface(score, tempo: float | None, programs: tuple[int, int | None] | None) -> None:
    """Set the tempo and instrument of a piano model's piece (its one track takes the melody program)."""
    import symusic

    if tempo is not None:
        score.tempos.clear()
        score.tempos.append(symusic.Tempo(0, float(tempo)))
    if programs is not None:
        for t in score.tracks:
            t.program = programs[0]
