"""A whole song for an emotion: form -> harmonic plan -> melody -> accompaniment.

:class:`SongModel` bundles the three learned parts (chord plan, melody network,
accompaniment patterns; see :mod:`moodsong.song.plan`, :mod:`moodsong.song.melody`,
:mod:`moodsong.song.accomp`) in one safetensors file plus a JSON config, and
:meth:`SongModel.generate` writes songs for a target valence/arousal:

1. Form: phrases of 4 bars (8 from 32 bars on) named by letters, by default
   ``A A' B A'`` extended as ``A A' B A' C C' B A'``; a primed letter repeats its phrase's
   chords with a closed (tonic) cadence, and a letter that comes back has the same chords
   and opens with the same melody (a share of it note for note, drawn per song), then goes
   on anew. Songs of 24 bars or more, without a form from the user, open with an
   instrumental intro (letter ``I``: the accompaniment alone) of 0, 4 or 8 bars, drawn from
   how long the training songs wait before their melody enters (POP909: 7 bars on average).
   ``I`` may also be written in a form, for an intro or an interlude.
2. Plan: for each new phrase, several progressions are sampled from the chord n-grams
   (tilted by valence) and the one whose brightness is closest to the target is kept.
3. Melody: the GRU samples the events of every phrase over its plan, all candidates in
   one batch, under constraints that make it singable: one voice, a register drawn per
   song with a training song's (its lowest note G3..A4 and its range 12..24 semitones,
   :func:`fit_styles`; at most 24, :data:`MELODY_SPAN` without a style table), and every
   phrase ending on a long chord tone (the tonic triad at a closed cadence).
4. Accompaniment: a learned run of one-bar patterns per section letter (consecutive bars
   of one real arrangement; busier at higher arousal; B, C... from the same arrangement;
   a return of a section plays its run again), re-voiced over each bar's chords; the
   last bar holds the final chord.

The emotion reaches the music through the mode and chord qualities (valence), the
harmonic rhythm, tempo, melody density, pattern density and loudness (arousal). Nothing
here imports torch: the melody network runs in numpy.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from moodsong.corpora.pop909 import QUALITIES, STEPS_PER_BAR, Chord
from moodsong.errors import MoodsongError
from moodsong.representation.chords import SCALES
from moodsong.song.accomp import AccompanimentModel
from moodsong.song.melody import (
    BAR,
    COND_DIM,
    DURATION,
    POSITION,
    MelodyConfig,
    MelodySampler,
    Vocab,
    melody_condition,
    model_ids,
)
from moodsong.song.plan import ChordPlanModel, PlanChord, chord_name

__all__ = ["SongModel", "Song", "SongSpec", "parse_form", "parse_key", "default_form", "fit_styles", "KEY_NAMES",
           "DEFAULT_SONG_MODEL", "INSTRUMENTAL"]

DEFAULT_SONG_MODEL = "pop909_song"  # stem inside moodsong/data
TICKS_PER_QUARTER = 480
TICKS_PER_STEP = TICKS_PER_QUARTER // 4
KEY_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_KEY_ALIASES = {"Db": 1, "D#": 3, "Gb": 6, "G#": 8, "A#": 10, "Cb": 11, "B#": 0, "E#": 5, "Fb": 4}
#: Keys a singer is comfortable in, drawn at random when no --key is given.
_MAJOR_TONICS = (0, 2, 3, 5, 7, 8, 10)
_MINOR_TONICS = (9, 11, 0, 2, 4, 5, 7)
_TEMPLATE = ("A", "A'", "B", "A'", "C", "C'", "B", "A'")
#: The melody's range: 21 semitones from a lowest note drawn per song in A3..D4 (so at most
#: A3..F#5 .. D4..B5). POP909's melodies sit at C4..Bb5 (5th-95th percentile, median C5), their
#: lowest note in the first 32 bars at G3..G4 (10th-90th percentile).
MELODY_SPAN = 21
#: The form letter of an instrumental section (an intro, or an interlude): accompaniment only.
INSTRUMENTAL = "I"
#: Songs of at least this many bars get an instrumental intro when the form is not given.
INTRO_MIN_BARS = 24
#: Columns of :attr:`SongModel.styles`: one row per training song.
STYLE_COLUMNS = ("intro_bars", "melody_low", "melody_span")
#: General MIDI programs of melody and accompaniment per quadrant (distinct timbres).
INSTRUMENTS = {1: (73, 0), 2: (40, 0), 3: (71, 0), 4: (11, 4)}


def _sharps(tonic: int, mode: str) -> int:
    """Key signature as sharps (+) or flats (-) for symusic/MIDI."""
    major_tonic = tonic if mode == "major" else (tonic + 3) % 12
    return {0: 0, 7: 1, 2: 2, 9: 3, 4: 4, 11: 5, 6: 6, 1: -5, 5: -1, 10: -2, 3: -3, 8: -4}[major_tonic]


def parse_key(key: str) -> tuple[int, str]:
    """``"D minor"``, ``"Dm"``, ``"F# major"``, ``"Bb"`` -> ``(tonic pitch class, mode)``.

    Raises
    ------
    MoodsongError
        For anything else.
    """
    k = key.strip().replace("♯", "#").replace("♭", "b")
    mode = "major"
    low = k.lower()
    for suffix, m in ((" minor", "minor"), (" major", "major"), (" min", "minor"), (" maj", "major"), ("min", "minor"),
                      ("maj", "major"), ("m", "minor")):
        if low.endswith(suffix) and len(k) > len(suffix):
            k, mode = k[: -len(suffix)].strip(), m
            break
    name = k[:1].upper() + k[1:]
    if name in KEY_NAMES:
        return KEY_NAMES.index(name), mode
    if name in _KEY_ALIASES:
        return _KEY_ALIASES[name], mode
    raise MoodsongError(f"unknown key {key!r}; use a note name and a mode, e.g. 'D minor', 'Bb major', 'F#m'")


def fit_styles(songs) -> np.ndarray:
    """One row per song (:data:`STYLE_COLUMNS`): its intro and its melody's register, learned jointly.

    A generated song draws one row, so that songs differ from each other as real songs do
    (the register and the intro vary together with the song, not independently). Measured on
    POP909's 700 train songs: the first melody note falls in bar 7 on average (10th-90th
    percentile: bars 4-12, peaks at 5 and 9: four- and eight-bar intros with a pickup); the melody's
    lowest note G3..A4 and its range 12..24 semitones (10th-90th percentile) in its first 32 bars.

    Parameters
    ----------
    songs : iterable of PopSong
        Songs with ``melody`` as ``(start_step, duration, pitch, velocity)`` rows.

    Returns
    -------
    ndarray of int16, shape (n, 3)
        Intro bars (whole bars before the melody; a pickup in the second half of a bar counts
        that bar as intro), and the lowest pitch and range in semitones of the melody's first 32 bars.
    """
    rows = []
    for song in songs:
        mel = np.asarray(song.melody)
        if not len(mel):
            continue
        first = int(mel[:, 0].min())
        bar, pos = divmod(first, STEPS_PER_BAR)
        intro = bar + (pos >= STEPS_PER_BAR // 2)
        head = mel[mel[:, 0] < first + 32 * STEPS_PER_BAR]
        lo, hi = int(head[:, 2].min()), int(head[:, 2].max())
        rows.append((intro, lo, hi - lo))
    return np.array(rows, np.int16).reshape(-1, len(STYLE_COLUMNS))


def default_form(bars: int) -> tuple[list[str], int]:
    """Section letters and bars per phrase for a piece of ``bars`` bars."""
    phrase = 8 if bars >= 32 and bars % 8 == 0 else 4
    if bars < 8:
        return ["A"], bars
    n = bars // phrase
    letters = [_TEMPLATE[i % len(_TEMPLATE)] for i in range(n)]
    if n > 1:
        letters[-1] = "A'"
    return letters, phrase


def parse_form(form: str | None, bars: int) -> tuple[list[str], int]:
    """Section letters (``"AABA"``, ``"A A' B A"``, ``"verse chorus"`` not accepted) and bars per phrase.

    Raises
    ------
    MoodsongError
        If the form cannot fill ``bars`` bars with whole phrases of 2 to 16 bars.
    """
    if form is None:
        return default_form(bars)
    letters: list[str] = []
    for ch in form.replace(" ", "").replace("-", ""):
        if ch.isalpha() and ch.isascii():
            letters.append(ch.upper())
        elif ch in "'’" and letters:
            letters[-1] += "'"
        else:
            raise MoodsongError(f"bad form {form!r}: use section letters such as AABA or \"A A' B A\"")
    if not letters:
        raise MoodsongError(f"bad form {form!r}: use section letters such as AABA")
    if bars % len(letters) or not 2 <= bars // len(letters) <= 16:
        raise MoodsongError(f"form {form!r} has {len(letters)} sections; {bars} bars cannot be split into equal "
                            f"phrases of 2 to 16 bars (try --bars {len(letters) * 4})")
    return letters, bars // len(letters)


@dataclass
class SongSpec:
    """What a song should be (the emotion and the user's overrides).

    Attributes
    ----------
    valence, arousal : float
        Target in [-1, 1].
    bars : int
        Length in 4/4 bars.
    form : str, optional
        Section letters, e.g. ``"AABA"``; default by length (:func:`default_form`).
    key : str, optional
        E.g. ``"D minor"``; default: mode from valence, a singable tonic at random.
    tempo_qpm : float, optional
        Default from arousal.
    programs : (int, int), optional
        General MIDI programs of melody and accompaniment.
    temperature : float
        Melody sampling temperature.
    """

    valence: float = 0.0
    arousal: float = 0.0
    bars: int = 16
    form: str | None = None
    key: str | None = None
    tempo_qpm: float | None = None
    programs: tuple[int, int] | None = None
    temperature: float = 1.0


@dataclass
class Song:
    """A generated song (notes on the sixteenth-step grid, absolute pitches).

    Attributes
    ----------
    tonic, mode : int, str
        Key.
    qpm : float
        Tempo in quarter notes per minute.
    sections : list of (str, int, int)
        ``(letter, start_bar, bars)``.
    plan : list of PlanChord
        The harmonic plan (key-relative chords with their spans).
    melody, accompaniment : ndarray, shape (n, 4)
        ``(start_step, duration_steps, pitch, velocity)``.
    programs : (int, int)
        General MIDI programs of melody and accompaniment.
    primer_bars : int
        Bars at the start that came from the user's primer (kept verbatim).
    """

    tonic: int
    mode: str
    qpm: float
    sections: list
    plan: list
    melody: np.ndarray
    accompaniment: np.ndarray
    programs: tuple[int, int] = (0, 0)
    primer_bars: int = 0
    primer_score: object = field(default=None, repr=False)
    primer_melody_track: str | None = None

    @property
    def key_name(self) -> str:
        return f"{chord_name(self.tonic, '', self.tonic, self.mode)} {self.mode}"

    @property
    def bars(self) -> int:
        return max((s + b for _, s, b in self.sections), default=0)

    @property
    def form(self) -> str:
        return " ".join(letter for letter, _, _ in self.sections)

    def chord_names(self) -> list[str]:
        return [chord_name(c.degree + self.tonic, c.quality, self.tonic, self.mode) for c in self.plan]

    def bar_chords(self) -> list[str]:
        """The plan as one entry per bar: ``"C"``, or ``"C G"`` when the chord changes at half bar."""
        out = []
        for bar in range(self.bars):
            lo, hi = bar * STEPS_PER_BAR, (bar + 1) * STEPS_PER_BAR
            names = [chord_name(c.degree + self.tonic, c.quality, self.tonic, self.mode)
                     for c in self.plan if c.start < hi and c.end > lo]
            out.append(" ".join(names) if names else "N.C.")
        return out

    def plan_dicts(self) -> list[dict]:
        return [c.to_dict(self.tonic, self.mode) for c in self.plan]

    def to_score(self):
        """A multi-track ``symusic.Score``: tracks Melody and Accompaniment, tempo, key, 4/4, chord markers."""
        import symusic

        score = symusic.Score(TICKS_PER_QUARTER)
        score.tempos.append(symusic.Tempo(0, float(self.qpm)))
        score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
        score.key_signatures.append(symusic.KeySignature(0, _sharps(self.tonic, self.mode), int(self.mode == "minor")))
        first = self.primer_bars * STEPS_PER_BAR  # the primer's notes come verbatim from its score
        for name, notes, program in (("Melody", self.melody, self.programs[0]),
                                     ("Accompaniment", self.accompaniment, self.programs[1])):
            track = symusic.Track(name, int(program), False)
            n = notes[notes[:, 0] >= first] if len(notes) else notes
            if len(n):
                n = n[np.lexsort((n[:, 2], n[:, 0]))]
                track.notes = symusic.Note.from_numpy(
                    (n[:, 0] * TICKS_PER_STEP).astype(np.int32), (n[:, 1] * TICKS_PER_STEP).astype(np.int32),
                    n[:, 2].astype(np.int8), n[:, 3].astype(np.int8))
            score.tracks.append(track)
        if self.primer_score is not None:
            for t in self.primer_score.tracks:
                if t.is_drum or not len(t.notes):
                    continue
                is_melody = self.primer_melody_track is not None and t.name == self.primer_melody_track
                dest = score.tracks[0] if is_melody else score.tracks[1]
                for note in t.notes:
                    dest.notes.append(note.copy())
                dest.notes.sort()
        for c, name in zip(self.plan, self.chord_names()):
            score.markers.append(symusic.TextMeta(int(c.start * TICKS_PER_STEP), name))
        return score


@dataclass
class _Row:
    """Sampling state of one candidate's melody in one section."""

    chords: list  # absolute Chord spans of the whole song
    start_bar: int
    bars: int
    density: int
    minor: bool
    tonic: int
    closed: bool  # the phrase ends on the tonic triad
    forced: list  # tokens to emit before sampling (a repeated phrase's prefix)
    end_step: int  # no note may sound past this step
    melody_low: int = 60  # lowest MIDI pitch the melody may use
    melody_span: int = MELODY_SPAN  # and how far above it
    tokens: list = field(default_factory=list)
    bar: int = 0  # bars opened so far (the first BAR is fed at the start)
    busy: int = 0  # absolute step until which the last note sounds
    onset: int = 0
    notes_in_bar: int = 0
    done: bool = False

    def chord_at(self, step: int) -> Chord | None:
        return next((c for c in self.chords if c.start <= step < c.end), None)

    def cond(self, step: int) -> np.ndarray:
        c = self.chord_at(step)
        return melody_condition(None if c is None else (c.root - self.tonic) % 12, None if c is None else c.quality,
                                step // STEPS_PER_BAR - self.start_bar, self.minor, self.density)


class SongModel:
    """Plan + melody + accompaniment; see the module docstring.

    Parameters
    ----------
    plan : ChordPlanModel
    accomp : AccompanimentModel
    melody_config : MelodyConfig
    melody_weights : dict of str to ndarray
        The melody network's state dict.
    meta : dict, optional
        Training record kept in the JSON.
    styles : ndarray, shape (n, 3), optional
        :func:`fit_styles` of the training songs: each song draws its intro and its melody's
        register from one row. Without it: no intro, and a register drawn in A3..D4 + 21 semitones.
    """

    def __init__(self, plan: ChordPlanModel, accomp: AccompanimentModel, melody_config: MelodyConfig,
                 melody_weights: dict[str, np.ndarray], meta: dict | None = None, styles: np.ndarray | None = None):
        self.plan = plan
        self.accomp = accomp
        self.melody_config = melody_config
        self.melody_weights = melody_weights
        self.styles = None if styles is None or not len(styles) else np.asarray(styles, np.int16)
        self.meta = dict(meta or {})
        self.sampler = MelodySampler(melody_weights, melody_config)
        self.vocab = Vocab(melody_config.vocab)

    # -- persistence -----------------------------------------------------------------

    def save(self, stem: str | os.PathLike, meta: dict | None = None) -> Path:
        """Write ``stem.safetensors`` and ``stem.json`` atomically."""
        from safetensors.numpy import save_file

        from moodsong.fileio import atomic_path, write_text_atomic

        stem = Path(stem)
        stem.parent.mkdir(parents=True, exist_ok=True)
        tensors = {f"melody.{k}": np.ascontiguousarray(v) for k, v in self.melody_weights.items()}
        tensors.update(self.plan.to_arrays())
        tensors.update(self.accomp.to_arrays())
        if self.styles is not None:
            tensors["style.table"] = np.ascontiguousarray(self.styles)
        with atomic_path(stem.with_suffix(".safetensors")) as tmp:
            save_file(tensors, str(tmp))
        if meta:
            self.meta.update(meta)
        doc = {"model_type": "song", "melody": self.melody_config.to_dict(),
               "plan": {"min_context": self.plan.min_context, "tilt": self.plan.tilt, "hold": self.plan.hold,
                        "min_chord": self.plan.min_chord},
               **self.meta}
        write_text_atomic(stem.with_suffix(".json"), json.dumps(doc, indent=1, default=float))
        return stem

    @classmethod
    def load(cls, stem: str | os.PathLike | None = None) -> SongModel:
        """The shipped song model (``stem=None``) or the one at ``stem`` (with or without suffix).

        Raises
        ------
        MoodsongError
            If the files are missing, corrupt or hold another kind of model.
        """
        from safetensors.numpy import load_file

        if stem is None:
            from importlib import resources

            stem = Path(str(resources.files("moodsong") / "data" / DEFAULT_SONG_MODEL))
        stem = Path(str(stem).removesuffix(".json").removesuffix(".safetensors"))
        try:
            doc = json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise MoodsongError(f"{stem}.json: not a readable song model ({e})") from None
        if not isinstance(doc, dict) or doc.get("model_type") != "song":
            kind = doc.get("model_type") if isinstance(doc, dict) else None
            raise MoodsongError(f"{stem}: not a song model (model_type {kind!r})")
        try:
            arrays = load_file(str(stem.with_suffix(".safetensors")))
        except Exception as e:  # safetensors raises its own SafetensorError on a corrupt file
            raise MoodsongError(f"{stem}.safetensors: not a readable song model ({e})") from None
        if "vocab" not in doc.get("melody", {}):
            raise MoodsongError(f"{stem}: a song model from before the MidiTok melody vocabulary; retrain it "
                                f"with `moodsong train-song`")
        weights = {k.removeprefix("melody."): v for k, v in arrays.items() if k.startswith("melody.")}
        meta = {k: v for k, v in doc.items() if k not in ("model_type", "melody", "plan")}
        return cls(ChordPlanModel.from_arrays(arrays, **doc.get("plan", {})), AccompanimentModel.from_arrays(arrays),
                   MelodyConfig(**doc["melody"]), weights, meta, styles=arrays.get("style.table"))

    # -- generation ------------------------------------------------------------------

    def _draw_intro(self, bars: int, rng: np.random.Generator) -> int:
        """Intro bars drawn from the training songs, in whole four-bar phrases, at most a quarter of the song."""
        if self.styles is None:
            return 0
        intro = int(self.styles[rng.integers(len(self.styles)), 0])
        return min(4 * round(intro / 4), 8, bars // 4 // 4 * 4)

    def _draw_register(self, rng: np.random.Generator) -> tuple[int, int]:
        """The melody's lowest pitch and range (semitones), drawn together from one training song."""
        if self.styles is None:
            return int(rng.integers(57, 63)), MELODY_SPAN
        _, low, span = (int(x) for x in self.styles[rng.integers(len(self.styles))])
        # a window the melody can move in (at least an octave; at most two, and up to D6), from G3
        # upwards; wider than the song's own range, which a sampled melody seldom spans end to end
        span = int(np.clip(span + 5, 12, 24))
        low = int(np.clip(low - 2, 55, 86 - span))
        return low, span

    def generate(self, spec: SongSpec, count: int = 1, seed: int = 0, primer=None) -> list[Song]:
        """``count`` songs for ``spec``; song ``i`` is reproducible from ``(spec, seed, i)``.

        Parameters
        ----------
        spec : SongSpec
        count : int
            Candidates, sampled together (the melody network runs them as one batch).
        seed : int
        primer : symusic.Score, optional
            A piece to continue: its notes are kept verbatim as the first bars, its key
            and tempo are kept unless ``spec`` overrides them, and the melody network is
            run over its top line before the new music starts.
        """
        if not 1 <= spec.bars <= 256:
            raise MoodsongError(f"bars must be 1..256, not {spec.bars}")
        from threadpoolctl import threadpool_limits

        # The network's matrices are tiny: BLAS threads only add hand-over costs (one step of
        # 6 candidates: 1.2 ms on one thread, 40 ms on two threads of a busy 2-core machine).
        with threadpool_limits(1, user_api="blas"):
            return self._generate(spec, count, seed, primer)

    def _generate(self, spec: SongSpec, count: int, seed: int, primer) -> list[Song]:
        rngs = [np.random.default_rng([seed, i]) for i in range(count)]
        prim = _read_primer(primer) if primer is not None else None
        letters, phrase = parse_form(spec.form, spec.bars)
        intro = 0
        if spec.form is None and prim is None and spec.bars >= INTRO_MIN_BARS:
            intro = self._draw_intro(spec.bars, np.random.default_rng([seed, 1 << 20]))
            if intro:
                letters, phrase = default_form(spec.bars - intro)
        v, a = float(np.clip(spec.valence, -1, 1)), float(np.clip(spec.arousal, -1, 1))
        songs = []
        for rng in rngs:
            if spec.key is not None:
                tonic, mode = parse_key(spec.key)
            elif prim is not None:
                tonic, mode = prim["tonic"], prim["mode"]
            else:
                mode = "minor" if v < 0 else "major"
                tonic = int(rng.choice(_MINOR_TONICS if mode == "minor" else _MAJOR_TONICS))
            # tempo as the piano models' steering sets it (EMOPIA's calm clips are slow), at most 128 qpm
            # so that the default 16 bars last at least 30 s: ~56 .. 128 qpm
            qpm = spec.tempo_qpm or (prim["qpm"] if prim is not None else min(128, round(96 + 34 * a + 6 * v)))
            # a song's own style, drawn per candidate. Two latent traits, as in real songs, where
            # melody and accompaniment go together (POP909 valid, first 32 bars: the bar repetition
            # of melody and piano correlates r = 0.40, their pitch-class entropy r = 0.58; drawn
            # independently, the generated songs had r = -0.24 and 0.00, and too narrow a spread of
            # either over whole songs):
            # - repetitiveness: how much of a returning phrase's melody comes back note for note,
            #   and how rarely a return changes its accompaniment;
            # - adventurousness: how far the chords and the melody stray from the commonest choices.
            repeat, adventure = rng.uniform(0.0, 1.0, 2)
            style = {"plan_temperature": float(0.45 + 1.35 * adventure),
                     "melody_temperature": float(0.9 + 0.2 * adventure),
                     "keep": float(0.0 + 0.95 * repeat), "vary": float(1.0 - repeat),
                     # the most repetitive third keeps to a 4- or 2-bar figure; the rest play runs of at
                     # least 8 bars, so that a phrase does not loop a shorter run
                     "loop": None if repeat < 0.65 else 4 if repeat < 0.9 else 2,
                     "run_length": 8 if repeat < 0.65 else 0,
                     # positions and durations sampled cooler than pitches: at the full temperature the
                     # melodies' bar rhythms repeated less than POP909's (per-piece rhythm repetition 0.87
                     # against 0.91 median, valid); with this and the two lines above the bare model's mean
                     # OA went from 0.84 to 0.86 (bench/songs.py, valid)
                     "rhythm_temperature": float(0.85 - 0.3 * repeat),
                     # the melody's note density class (sparse, medium, busy): arousal shifts the odds
                     # rather than fixing the class, so calm songs are not all equally sparse
                     "density": int(rng.choice(3, p=_density_odds(a)))}
            style["melody_low"], style["melody_span"] = self._draw_register(rng)
            songs.append({"rng": rng, "tonic": tonic, "mode": mode, "qpm": float(qpm), "style": style})
        offset_bars = prim["bars"] if prim is not None else 0
        sections, t = [], offset_bars
        if intro:
            sections.append((INSTRUMENTAL, t, intro))
            t += intro
        for letter in letters:
            sections.append((letter, t, phrase))
            t += phrase
        if spec.bars - intro - len(letters) * phrase > 0:  # a remainder lengthens the last phrase
            last = sections[-1]
            sections[-1] = (last[0], last[1], last[2] + spec.bars - intro - len(letters) * phrase)
        # 1. plans
        for s in songs:
            s["plan"] = self._plan(sections, letters, s, v, a, prim)
            s["chords"] = [c.absolute(s["tonic"]) for c in s["plan"]]
        # 2. melodies, all candidates at once, section by section
        melodies = self._melodies(songs, sections, v, a, spec.temperature, prim)
        # 3. accompaniment and assembly
        out = []
        quadrant = 1 if v >= 0 and a >= 0 else 2 if a >= 0 else 3 if v < 0 else 4
        programs = spec.programs or INSTRUMENTS[quadrant]
        for s, mel in zip(songs, melodies):
            acc = self._accompaniment(s, sections, a)
            # loudness follows arousal: the melody ~73 + 20 a (+6 on beats, a singer's unevenness of
            # +-6), the accompaniment ~6 softer keeping the pianist's own accents. POP909's songs are
            # louder whatever their mood (velocity 84 +- 9, first 32 bars of the valid songs), and the
            # two-sample test with velocity among its features tells the songs apart by it; at POP909's
            # level (84 + 14 a) calm and sad songs were heard as such in only 1 of 3 (Q3 and Q4, 12
            # songs each, 16 bars), against 12 of 12 at this level: loudness carries arousal.
            mel_notes = mel.copy()
            if len(mel_notes):
                accent = np.where(mel_notes[:, 0] % 4 == 0, 6, 0)
                wobble = s["rng"].normal(0, 6, len(mel_notes))
                mel_notes[:, 3] = np.clip(np.round(73 + 20 * a + accent + wobble), 25, 120)
            if len(acc):
                scale = (67 + 20 * a) / max(float(acc[:, 3].mean()), 1.0)
                acc[:, 3] = np.clip(np.round(acc[:, 3] * scale), 15, 115)
            if prim is not None:
                mel_notes = np.concatenate([prim["melody"], mel_notes]) if len(mel_notes) else prim["melody"]
                acc = np.concatenate([prim["accompaniment"], acc]) if len(acc) else prim["accompaniment"]
            out.append(Song(s["tonic"], s["mode"], s["qpm"], [(ltr, st, b) for ltr, st, b in sections],
                            s["plan"], mel_notes, acc, tuple(programs), offset_bars,
                            prim["score"] if prim is not None else None,
                            prim["melody_track"] if prim is not None else None))
        return out

    def _plan(self, sections, letters, s, v, a, prim) -> list[PlanChord]:
        rng = s["rng"]
        base: dict[str, list[PlanChord]] = {}
        plan: list[PlanChord] = list(prim["plan"]) if prim is not None else []
        context = self.plan.tokens(plan[-2:])
        for idx, (letter, start_bar, bars) in enumerate(sections):
            root = letter.rstrip("'")
            closed = letter.endswith("'") or idx == len(sections) - 1 or (
                letters.count(root) == 1 and letters.count(root + "'") == 0 and root == "A" and len(sections) == 1)
            key = root + ("'" if closed else "")
            if key not in base:
                if root in base or (root + "'") in base:  # a variant: the same chords, another cadence
                    ref = base.get(root) or base[root + "'"]
                    phrase = self._recadence(ref, closed, s["mode"])
                else:
                    cands = [self.plan.sample_phrase(bars, s["mode"], v, a, rng, context=context,
                                                     ending="closed" if closed else (
                                                         "open" if root in ("A", INSTRUMENTAL) else "free"),
                                                     temperature=s["style"]["plan_temperature"])
                             for _ in range(4)]
                    target = 1.0 * v  # brightness scale of ChordPlanModel.plan_valence
                    phrase = min(cands, key=lambda p: abs(self.plan.plan_valence(p) - target))
                    phrase = [PlanChord(c.start, c.end, c.degree, c.quality) for c in phrase]
                base[key] = phrase
            shift = start_bar * STEPS_PER_BAR
            ref = base[key]
            scale_end = bars * STEPS_PER_BAR
            for c in ref:
                if c.start >= scale_end:
                    break
                plan.append(PlanChord(c.start + shift, min(c.end, scale_end) + shift, c.degree, c.quality))
            # a phrase lengthened by a remainder holds its last chord
            if ref and ref[-1].end < scale_end:
                last = plan.pop()
                plan.append(PlanChord(last.start, scale_end + shift, last.degree, last.quality))
            context = self.plan.tokens(plan[-2:])
        return plan

    def _accompaniment(self, s: dict, sections: list, a: float) -> np.ndarray:
        """One learned pattern per section letter (B, C, ... a little busier), the last bar held."""
        rng, chords = s["rng"], s["chords"]
        scale = {(s["tonic"] + i) % 12 for i in SCALES[s["mode"]]}
        end = max(st + b for _, st, b in sections) * STEPS_PER_BAR
        runs: dict[str, int] = {}
        out = []
        first_song = None
        for idx, (letter, start_bar, bars) in enumerate(sections):
            root = letter.rstrip("'")
            if root == INSTRUMENTAL:  # an intro sets out the texture the first verse keeps
                root = "A"
            if root not in runs:  # A: a run that suits the arousal; B, C...: another run of the same arrangement
                run = self.accomp.choose_run(a + (0.0 if root == "A" else 0.3), rng, song=first_song,
                                             exclude=runs.get("A"), min_length=s["style"]["run_length"])
                runs[root] = run
                if first_song is None:
                    first_song = int(self.accomp.runs_[run, 2])
                    floor = self.accomp.run_floor(run)
            elif rng.random() < s["style"]["vary"]:  # a return, played differently this time
                runs[root] = self.accomp.choose_run(a, rng, song=first_song, exclude=runs[root],
                                                    min_length=s["style"]["run_length"])
            for bar in range(start_bar, start_bar + bars):
                t = bar * STEPS_PER_BAR
                pattern = self.accomp.run_pattern(runs[root], bar - start_bar, s["style"]["loop"])
                notes = self.accomp.realize(pattern, chords, t, end=end, scale=scale, lowest=floor)
                if idx == len(sections) - 1 and bar == start_bar + bars - 1:
                    # the final bar: the figure goes on for two beats over the last chord, then everything
                    # is held (a single held chord made the last bar unlike any other: POP909's first 32
                    # bars never end, and the songs' rhythm repetition fell below theirs)
                    notes = notes[notes[:, 0] < t + STEPS_PER_BAR // 2]
                    notes[:, 1] = t + STEPS_PER_BAR - notes[:, 0]
                    c = next((c for c in chords if c.start <= t < c.end), None)
                    if c is not None:  # only the chord's own tones are held, over its root in the bass
                        tones = [(c.root + i) % 12 for i in QUALITIES[c.quality]]
                        notes = notes[np.isin(notes[:, 2] % 12, tones)]
                        bass = floor + (c.root - floor) % 12
                        notes = np.concatenate([notes, np.array([(t, STEPS_PER_BAR, bass, 70)], np.int64)])
                out.append(notes)
        return np.concatenate(out) if out else np.zeros((0, 4), np.int64)

    def _recadence(self, ref: list[PlanChord], closed: bool, mode: str) -> list[PlanChord]:
        """``ref`` with its last chord made a tonic (closed) or dominant (open) cadence."""
        out = list(ref)
        last = out[-1]
        if closed:
            out[-1] = PlanChord(last.start, last.end, 0, "m" if mode == "minor" else "")
        else:
            out[-1] = PlanChord(last.start, last.end, 7, "")
        new = out[-1]
        if len(out) > 1 and (out[-2].degree, out[-2].quality) == (new.degree, new.quality):
            prev = out.pop(-2)  # the cadence chord was already sounding: one chord, held to the end
            out[-1] = PlanChord(prev.start, new.end, new.degree, new.quality)
        return out

    def _melodies(self, songs, sections, v, a, temperature, prim) -> list[np.ndarray]:
        B = len(songs)
        h = self.sampler.initial_state(B)
        if prim is not None and len(prim["tokens"]):
            h = self._warm(h, prim, songs)
        notes: list[list] = [[] for _ in range(B)]
        done: dict[str, list] = {}  # letter -> per-row tokens of that section
        for idx, (letter, start_bar, bars) in enumerate(sections):
            root = letter.rstrip("'")
            if root == INSTRUMENTAL:  # the accompaniment plays alone
                continue
            closed = letter.endswith("'") or idx == len(sections) - 1
            end_step = (start_bar + bars) * STEPS_PER_BAR
            rows = []
            for b, s in enumerate(songs):
                forced: list = []
                prev = done.get(letter) or done.get(root) or done.get(root + "'")
                if prev is not None:
                    # a section that returns (or its variant) opens with the same melody, its first
                    # half note for note, and goes on anew: recognisable, not a copy
                    toks = prev[b]
                    bar_idx = [i for i, t in enumerate(toks) if t == self.vocab.bar]
                    keep = max(1, round(bars * songs[b]["style"]["keep"]))
                    if letter not in done:  # a variant (A' after A) writes at least its cadence bar anew
                        keep = min(keep, bars - 1)
                    forced = list(toks[: bar_idx[keep] + 1]) if keep < len(bar_idx) else list(toks)
                rows.append(_Row(s["chords"], start_bar, bars, s["style"]["density"], s["mode"] == "minor",
                                 s["tonic"], closed, forced, end_step, s["style"]["melody_low"],
                                 s["style"]["melody_span"]))
            h = self._sample_section(rows, h, songs, temperature)
            done[letter] = [r.tokens for r in rows]
            for b, r in enumerate(rows):
                notes[b].extend(_decode(self.vocab, r.tokens, start_bar, songs[b]["tonic"]))
        return [np.array(n, np.int64).reshape(-1, 4) for n in notes]

    def _warm(self, h, prim, songs):
        """Run the network over the primer's melody events (teacher forcing) to set its state."""
        for t, c in zip(model_ids(prim["tokens"], self.vocab), prim["conds"]):
            _, h = self.sampler.step(np.full(len(songs), int(t)), np.repeat(c[None], len(songs), 0), h)
        return h

    def _sample_section(self, rows: list[_Row], h: np.ndarray, songs, temperature: float) -> np.ndarray:
        """Sample every row's events for its section (lock-step over rows); returns the new state."""
        B = len(rows)
        vocab = self.vocab
        V = vocab.size
        pitch_ids = vocab.pitch_ids
        pitch_rel = vocab.value[pitch_ids]
        dur_ids = vocab.duration_ids[np.argsort(vocab.value[vocab.duration_ids], kind="stable")]
        dur_steps = vocab.value[dur_ids]
        pos_ids = np.array([vocab.position_id[p] for p in range(STEPS_PER_BAR)])
        prev = np.full(B, vocab.bar)
        for r in rows:
            r.bar, r.busy = 1, max(r.busy, r.start_bar * STEPS_PER_BAR)
            r.tokens = [vocab.bar]
            if r.forced and r.forced[0] == vocab.bar:
                r.forced = r.forced[1:]
        gumbel_rng = [s["rng"] for s in songs]
        temps = [temperature * s["style"]["melody_temperature"] for s in songs]
        rhythm_temps = [t * s["style"]["rhythm_temperature"] for t, s in zip(temps, songs)]
        while True:
            active = [b for b, r in enumerate(rows) if not r.done]
            if not active:
                break
            conds = np.zeros((B, COND_DIM), np.float32)
            for b, r in enumerate(rows):
                step = (r.start_bar + r.bar - 1) * STEPS_PER_BAR
                if vocab.kind[prev[b]] != BAR:
                    step = r.onset
                conds[b] = r.cond(step)
            logits, h_new = self.sampler.step(prev, conds, h)
            # rows already finished keep their state
            for b in range(B):
                if rows[b].done:
                    h_new[:, b] = h[:, b]
            h = h_new
            for b in active:
                r = rows[b]
                bar_start = (r.start_bar + r.bar - 1) * STEPS_PER_BAR
                last_bar = r.bar == r.bars
                kind = vocab.kind[prev[b]]
                mask = np.full(V, -np.inf)
                if kind in (BAR, DURATION):
                    cadence_bar = last_bar  # every phrase ends on one long stable note
                    if cadence_bar and r.notes_in_bar >= 1:
                        mask[vocab.bar] = 0  # the phrase's final note has been written
                    else:
                        first = max(r.busy - bar_start, 0)
                        last = 4 if (cadence_bar and r.notes_in_bar == 0) else STEPS_PER_BAR - 1
                        if first <= last:
                            mask[pos_ids[first: last + 1]] = 0
                        if not (cadence_bar and r.notes_in_bar == 0 and first <= last):
                            mask[vocab.bar] = 0
                elif kind == POSITION:
                    lo = r.melody_low
                    ok = (pitch_rel + r.tonic >= lo) & (pitch_rel + r.tonic <= lo + r.melody_span)
                    if last_bar:  # a phrase ends on a stable tone: the chord's (the tonic triad's when closed)
                        c = r.chord_at(r.onset)
                        pcs = {0, 3 if r.minor else 4, 7} if (r.closed or c is None) else {
                            (c.root - r.tonic + i) % 12 for i in QUALITIES[c.quality][:3]}
                        ok &= np.isin(pitch_rel % 12, list(pcs))
                    mask[pitch_ids[ok]] = 0
                else:  # after a pitch: its duration
                    room = r.end_step - r.onset
                    ok = dur_steps <= max(room, 1)
                    if last_bar:
                        ok &= dur_steps >= min(8, room)
                    if not ok.any():
                        ok[0] = True
                    mask[dur_ids[ok]] = 0
                tb = temps[b] if kind == POSITION else rhythm_temps[b]  # after a position comes a pitch
                if r.forced:
                    tok = int(r.forced.pop(0))
                    if not np.isfinite(mask[tok]):  # the repeated prefix no longer fits: sample from here
                        r.forced = []
                        tok = _draw(logits[b] / tb + mask, gumbel_rng[b])
                else:
                    tok = _draw(logits[b] / tb + mask, gumbel_rng[b])
                k = vocab.kind[tok]
                if k == BAR:
                    if r.bar == r.bars:
                        r.done = True
                        continue  # the next section feeds this BAR itself
                    r.bar += 1
                    r.notes_in_bar = 0
                elif k == POSITION:
                    r.onset = bar_start + int(vocab.value[tok])
                    r.notes_in_bar += 1
                elif k == DURATION:
                    r.busy = r.onset + int(vocab.value[tok])
                r.tokens.append(tok)
                prev[b] = tok
        return h


def _density_odds(arousal: float) -> np.ndarray:
    """Odds of the melody density classes (sparse, medium, busy) at ``arousal``: 0.6 / 0.34 / 0.06 at -0.6."""
    sparse, busy = np.clip(1 / 3 - 0.45 * arousal, 0.02, 0.9), np.clip(1 / 3 + 0.45 * arousal, 0.02, 0.9)
    p = np.array([sparse, max(1.0 - sparse - busy, 0.05), busy])
    return p / p.sum()


def _draw(logits: np.ndarray, rng: np.random.Generator) -> int:
    """A sample from softmax(logits) by the Gumbel-max trick."""
    g = rng.gumbel(size=logits.shape)
    return int(np.argmax(logits + g))


def _decode(vocab: Vocab, tokens: list[int], start_bar: int, shift: int) -> list[tuple[int, int, int, int]]:
    """Events of one section -> ``(start_step, duration, pitch, velocity)`` (velocity set later)."""
    out, bar, onset, pitch = [], start_bar - 1, 0, 60
    for t in tokens:
        k, v = vocab.kind[t], int(vocab.value[t])
        if k == BAR:
            bar += 1
        elif k == POSITION:
            onset = bar * STEPS_PER_BAR + v
        elif k == DURATION:
            out.append((onset, v, pitch, 80))
        else:
            pitch = v + shift
    return out


def _read_primer(score) -> dict:
    """What continuing ``score`` needs: its key, tempo, length, chords, melody line and tokens.

    The melody is the track named like a melody, else the top line (the highest note at
    each onset); the notes themselves are kept verbatim in ``score`` (ticks rescaled to
    480 per quarter) and copied into the output by :meth:`Song.to_score`.
    """
    from moodsong.corpora.pop909 import PopSong
    from moodsong.corpora.songs import _MELODY_NAMES, _notes
    from moodsong.representation.chords import analyze, estimate_key
    from moodsong.representation.lines import top_line
    from moodsong.song.melody import song_events

    score = score.resample(TICKS_PER_QUARTER) if score.ticks_per_quarter != TICKS_PER_QUARTER else score.copy()
    tracks = [t for t in score.tracks if not t.is_drum and len(t.notes)]
    if not tracks:
        raise MoodsongError("the primer has no pitched notes (empty or drums only)")
    named = [t for t in tracks if any(n in t.name.lower() for n in _MELODY_NAMES)]
    allnotes = np.concatenate([_notes(t, TICKS_PER_QUARTER) for t in tracks])
    if named:
        melody = _notes(named[0], TICKS_PER_QUARTER)
        melody_ids = {id(named[0])}
    else:  # the top line: the highest note starting at each step
        melody = allnotes[top_line(allnotes[:, 0], allnotes[:, 2])]
        melody_ids = set()
    end_step = int((allnotes[:, 0] + allnotes[:, 1]).max())
    bars = max(1, -(-end_step // STEPS_PER_BAR))
    key = estimate_key(score)
    kname, _, kmode = key.partition(" ")
    tonic, mode = (parse_key(kname.replace("-", "b") + (" minor" if kmode == "minor" else " major")) if kname
                   else (0, "major"))
    qpm = round(float(score.tempos[0].qpm), 2) if len(score.tempos) else 120.0  # MIDI stores microseconds
    plan, chords = [], []
    for seg in analyze(score, per="bar").segments:
        if seg.root is None:
            continue
        q = seg.suffix if seg.suffix in QUALITIES else ""
        start, end = int(round(seg.start_q * 4)), int(round(seg.end_q * 4))
        if end <= start:
            continue
        plan.append(PlanChord(start, end, (seg.root - tonic) % 12, q))
        chords.append(Chord(start, end, seg.root, q))
    # the melody line in the network's events, to run it over the primer before the new music
    song = PopSong("primer", melody, melody[:0], allnotes, chords, tonic, mode, qpm, bars)
    tokens, conds = song_events(song)  # the tokenizer's ids: SongModel._warm maps them to the model's
    accompaniment = allnotes if not named else np.concatenate(
        [_notes(t, TICKS_PER_QUARTER) for t in tracks if id(t) not in melody_ids] or [np.zeros((0, 4), np.int64)])
    return {"score": score, "tonic": tonic, "mode": mode, "qpm": qpm, "bars": bars, "plan": plan,
            "melody": melody, "accompaniment": accompaniment, "tokens": tokens, "conds": conds,
            "melody_track": named[0].name if named else None}
