"""Emotion -> musical surface: what a listener hears change with valence and arousal.

The mapping follows the cues that music-psychology studies (Gabrielsson &
Lindstrom; Juslin) find most consistent, each as a smooth function of the
target (valence, arousal) in [-1, 1]:

============  ==========================================  ==========================
cue           rule                                        range
============  ==========================================  ==========================
tempo         faster with arousal, a little with valence  ~56 .. 136 qpm
mode          major when valence > 0, minor when < 0      snap out-of-scale notes
register      higher with valence and arousal             mean pitch ~55 .. 70
density       sparser when arousal is low                 keep 55 .. 100 % of notes, never below the target note rate
articulation  legato when calm, detached when excited     durations stretched/cut
velocity      louder with arousal                         ~42 .. 98
instrument    by quadrant (bright piano, grand, strings,  General MIDI program
              electric piano)
============  ==========================================  ==========================

:func:`surface_for` gives the parameters; :func:`apply_surface` applies them to
a generated note-state matrix and returns a symusic score.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import symusic

from moodsong.emotion import quadrant_of
from moodsong.emotion.music import PITCH_NAMES, NoteArrays, key_estimate
from moodsong.representation.chords import SCALES
from moodsong.representation.pianoroll import PianoRollConfig, notes_to_roll, roll_to_notes, roll_to_score

__all__ = ["SurfaceParams", "surface_for", "apply_surface", "INSTRUMENTS", "MAJOR_SCALE", "MINOR_SCALE"]

MAJOR_SCALE = SCALES["major"]
#: Natural minor plus the raised 7th (harmonic minor's leading tone keeps cadences minor, not modal).
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10, 11)

#: Quadrant -> (General MIDI program, name). Chosen for timbre that matches each quadrant's character.
INSTRUMENTS = {
    1: (1, "Bright Acoustic Piano"),
    2: (0, "Acoustic Grand Piano"),
    3: (48, "String Ensemble 1"),
    4: (4, "Electric Piano 1"),
}


@dataclass
class SurfaceParams:
    """How a piece should sound for one emotion target.

    Attributes
    ----------
    qpm : float
        Tempo, quarter notes per minute.
    mode : str or None
        ``"major"``, ``"minor"`` or None (leave pitches as generated).
    register_mean : float
        Target mean MIDI pitch; the piece is transposed towards it.
    keep_fraction : float
        Share of notes kept (density); 1.0 keeps all.
    min_onsets_per_s : float
        Thinning stops at this note rate (notes per second at ``qpm``): a piece that is already
        sparse is not made sparser than music of that emotion is (EMOPIA's medians: 8.1, 10.2, 4.4
        and 4.3 onsets/s for Q1..Q4).
    legato : float
        -1 (detached: notes cut to at most a step) .. +1 (notes held to the next onset).
    velocity : int
        Mean MIDI velocity.
    program : int
        General MIDI program.
    instrument : str
    """

    qpm: float
    mode: str | None
    register_mean: float
    keep_fraction: float
    min_onsets_per_s: float
    legato: float
    velocity: int
    program: int
    instrument: str

    def to_dict(self) -> dict:
        return asdict(self)


def surface_for(valence: float, arousal: float) -> SurfaceParams:
    """Surface parameters for a target in [-1, 1]^2 (values are clipped)."""
    v = float(np.clip(valence, -1, 1))
    a = float(np.clip(arousal, -1, 1))
    mode = "major" if v > 0.1 else ("minor" if v < -0.1 else None)
    program, name = INSTRUMENTS[quadrant_of(v, a)]
    return SurfaceParams(
        qpm=round(96 + 34 * a + 6 * v, 1),
        mode=mode,
        register_mean=round(62.5 + 4.5 * v + 3.0 * a, 1),
        keep_fraction=round(min(1.0, 0.78 + 0.22 * a + 0.1 * max(a, 0)), 3),
        min_onsets_per_s=round(6.75 + 4.0 * a, 2),
        legato=round(float(np.clip(-1.2 * a, -1, 1)), 3),
        velocity=int(round(70 + 28 * a)),
        program=program,
        instrument=name,
    )


def _snap_to_scale(pitch: np.ndarray, tonic: int, scale: tuple[int, ...], prefer_down: bool) -> np.ndarray:
    """Move each out-of-scale pitch by one semitone to the scale (direction by ``prefer_down``)."""
    inscale = np.zeros(12, bool)
    inscale[[(tonic + s) % 12 for s in scale]] = True
    out = pitch.copy()
    bad = ~inscale[out % 12]
    first, second = (-1, 1) if prefer_down else (1, -1)
    for step in (first, second):
        ok = bad & inscale[(out + step) % 12]
        out[ok] += step
        bad &= ~ok
    return out


def apply_surface(
    roll: np.ndarray,
    params: SurfaceParams,
    config: PianoRollConfig = PianoRollConfig(),
    *,
    rng: np.random.Generator | None = None,
) -> tuple[symusic.Score, dict]:
    """Steer a generated note-state matrix towards ``params`` and render it as a score.

    Steps, in order: transpose towards ``register_mean`` (whole semitones),
    snap to the parallel major/minor scale of the detected tonic, thin notes
    (never a chord's lowest note on a beat), stretch or cut durations, set
    velocities (beat accents, small random spread), set tempo and instrument.

    Returns
    -------
    (symusic.Score, dict)
        The score, and what was done (``key``, ``transpose``, ``notes_kept``...).
    """
    rng = np.random.default_rng(0) if rng is None else rng
    col, start, end = roll_to_notes(roll)
    pitch = col.astype(np.int64) + config.lowest_pitch
    info: dict = {"notes_in": int(col.size)}
    if col.size == 0:
        score = roll_to_score(roll, config, qpm=params.qpm, program=params.program)
        return score, {**info, "key": None, "transpose": 0, "notes_out": 0}

    # Register: whole-piece shift towards the target mean pitch.
    shift = int(np.clip(round(params.register_mean - pitch.mean()), -12, 12))
    pitch = pitch + shift

    # Mode: keep the detected tonic, take its parallel major or minor.
    dur_s = (end - start).astype(np.float64)
    notes = NoteArrays(start.astype(np.float64), dur_s, pitch, np.full(pitch.shape, 80))
    tonic, found_mode, _ = key_estimate(notes)
    mode = params.mode or found_mode
    if params.mode is not None:
        scale = MAJOR_SCALE if mode == "major" else MINOR_SCALE
        pitch = _snap_to_scale(pitch, tonic, scale, prefer_down=mode == "minor")

    # Density: drop a random share of notes (never below the target note rate), but keep the
    # lowest note of each onset on a beat.
    spq = config.steps_per_quarter
    seconds = roll.shape[0] / spq * 60.0 / params.qpm
    keep_fraction = max(params.keep_fraction, min(1.0, params.min_onsets_per_s * seconds / pitch.size))
    info["keep_fraction"] = round(keep_fraction, 3)
    keep = np.ones(pitch.size, bool)
    if keep_fraction < 1.0:
        keep = rng.random(pitch.size) < keep_fraction
        on_beat = start % spq == 0
        for t in np.unique(start[on_beat]):
            idx = np.flatnonzero(start == t)
            keep[idx[np.argmin(pitch[idx])]] = True
    pitch, start, end = pitch[keep], start[keep], end[keep]

    # Articulation: legato holds a note towards the next onset (any pitch), detached cuts it short.
    uniq = np.unique(start)
    nxt = uniq[np.minimum(np.searchsorted(uniq, start, side="right"), uniq.size - 1)]
    nxt = np.where(nxt > start, nxt, end)
    if params.legato > 0:
        target = np.maximum(end, nxt)
        end = np.round(end + params.legato * (target - end)).astype(np.int64)
    elif params.legato < 0:
        short = np.maximum(start + 1, np.minimum(end, start + spq // 2))
        end = np.round(end + (-params.legato) * (short - end)).astype(np.int64)
    end = np.maximum(end, start + 1)

    # Back through the roll so overlapping same-pitch notes merge as everywhere else in moodsong.
    steered = notes_to_roll(start, end, pitch, config)
    col2, s2, _ = roll_to_notes(steered)
    beat = (s2 % spq == 0).astype(np.float64) + (s2 % (4 * spq) == 0)
    vel = params.velocity + 6 * beat - 4 + rng.normal(0, 5, s2.size)
    vel = np.clip(np.round(vel), 1, 127).astype(np.int64)
    score = roll_to_score(steered, config, qpm=params.qpm, velocity=vel, program=params.program, track_name="moodsong")
    info.update(
        {
            "key": f"{PITCH_NAMES[tonic]} {mode}",
            "transpose": shift,
            "notes_out": int(col2.size),
        }
    )
    return score, info
