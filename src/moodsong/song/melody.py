"""The melody model: a chord-conditioned GRU over bar / position / pitch / duration events.

A melody is written as REMI-style events (Huang & Yang 2020, the Pop Music Transformer's
representation): ``BAR`` opens each bar, then every note is three tokens, its onset
``POS_p`` (sixteenth step 0-15 in the bar), ``PITCH_k`` (semitones above the key's tonic
in octave ``-1``, so ``PITCH_60`` is the tonic at middle C) and ``DUR_d`` (one of
:data:`DURATIONS`, in sixteenth steps). Pitches are key-relative: every training song is
read in its own key, so the model learns scale degrees, not absolute pitches.

Unlike REMI, chords are not tokens that the model writes: the harmonic plan is chosen first
(:mod:`moodsong.song.plan`), and each input token carries the chord sounding at its time as
a condition (root and quality relative to the key, its pitch classes, the bar's place in its
4-bar phrase, the mode and a note-density class). That is why the events are written here
and not by MidiTok's REMI, whose chord tokens are detected from the notes and would have to
be overwritten by the plan at every bar; the note events themselves are the same.

The network (:class:`MelodyNet`) is an embedding plus a linear map of the condition, two GRU
layers and a linear output. It is trained with PyTorch (:mod:`moodsong.training.song`) and
sampled with numpy alone (:class:`MelodySampler`), so composing never imports torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from moodsong.corpora.pop909 import STEPS_PER_BAR, PopSong
from moodsong.song.plan import QUALITY_NAMES, quality_index

__all__ = ["DURATIONS", "Vocab", "VOCAB", "MelodyConfig", "song_events", "melody_condition", "COND_DIM",
           "MelodySampler"]

#: Note lengths the model writes, in sixteenth steps (a longer note is shortened to 32).
DURATIONS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
PITCH_LO, PITCH_HI = 36, 96  # key-relative MIDI range kept (C2..B6 in C)


class Vocab:
    """Token ids: ``BAR``, ``POS_0..15``, ``PITCH_36..95``, ``DUR_*``."""

    BAR = 0
    POS0 = 1
    PITCH0 = POS0 + STEPS_PER_BAR
    DUR0 = PITCH0 + (PITCH_HI - PITCH_LO)
    SIZE = DUR0 + len(DURATIONS)

    @staticmethod
    def pos(p: int) -> int:
        return Vocab.POS0 + p

    @staticmethod
    def pitch(rel: int) -> int:
        return Vocab.PITCH0 + int(np.clip(rel, PITCH_LO, PITCH_HI - 1)) - PITCH_LO

    @staticmethod
    def dur(steps: int) -> int:
        return Vocab.DUR0 + int(np.argmin([abs(d - steps) for d in DURATIONS]))

    @staticmethod
    def kind(tok: int) -> str:
        if tok == Vocab.BAR:
            return "bar"
        if tok < Vocab.PITCH0:
            return "pos"
        return "pitch" if tok < Vocab.DUR0 else "dur"


VOCAB = Vocab()

#: Condition layout: chord root rel. tonic (12), quality (len QUALITY_NAMES), chord pitch
#: classes rel. tonic (12), bar in 4-bar phrase (4), minor mode (1), density class (3).
COND_DIM = 12 + len(QUALITY_NAMES) + 12 + 4 + 1 + 3
DENSITY_EDGES = (4.5, 7.5)  # melody notes per sounding bar: sparse < 4.5 <= medium < 7.5 <= busy (POP909 terciles)


def density_class(notes_per_bar: float) -> int:
    return int(np.searchsorted(DENSITY_EDGES, notes_per_bar, side="right"))


def melody_condition(root_rel: int | None, quality: str | None, bar: int, minor: bool, density: int) -> np.ndarray:
    """The condition of one token (see :data:`COND_DIM`); ``root_rel`` None means no chord."""
    from moodsong.corpora.pop909 import QUALITIES

    c = np.zeros(COND_DIM, np.float32)
    if root_rel is not None and quality is not None:
        c[root_rel % 12] = 1
        c[12 + quality_index(quality)] = 1
        o = 12 + len(QUALITY_NAMES)
        for i in QUALITIES[quality]:
            c[o + (root_rel + i) % 12] = 1
    o = 24 + len(QUALITY_NAMES)
    c[o + bar % 4] = 1
    c[o + 4] = float(minor)
    c[o + 5 + density] = 1
    return c


def song_events(song: PopSong, start_bar: int = 0, num_bars: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Tokens and per-token conditions of a song's melody, bars ``start_bar`` .. + ``num_bars``.

    Returns
    -------
    tokens : ndarray of int64, shape (T,)
    conds : ndarray of float32, shape (T, COND_DIM)
    """
    end_bar = song.num_bars if num_bars is None else start_bar + num_bars
    mel = song.melody
    sounding = np.unique(mel[:, 0] // STEPS_PER_BAR) if len(mel) else np.zeros(0)
    density = density_class(len(mel) / max(len(sounding), 1))
    minor = song.mode == "minor"
    by_bar: dict[int, list] = {}
    for s, d, p, _ in mel:
        by_bar.setdefault(int(s // STEPS_PER_BAR), []).append((int(s % STEPS_PER_BAR), int(d), int(p)))
    toks, conds = [], []
    starts = np.array([c.start for c in song.chords])
    cache: dict[tuple[int, int], np.ndarray] = {}

    def add(tok: int, step: int, bar: int) -> None:
        i = int(np.searchsorted(starts, step, side="right")) - 1
        ch = song.chords[i] if i >= 0 and step < song.chords[i].end else None
        key = (-1 if ch is None else i, bar % 4)
        if key not in cache:
            cache[key] = melody_condition(None if ch is None else (ch.root - song.tonic) % 12,
                                          None if ch is None else ch.quality, bar, minor, density)
        toks.append(tok)
        conds.append(cache[key])

    for bar in range(start_bar, end_bar):
        base = bar * STEPS_PER_BAR
        add(Vocab.BAR, base, bar)
        last = -1
        for pos, dur, pitch in by_bar.get(bar, []):
            if pos <= last:  # the melody is one voice: a second onset on one step is dropped
                continue
            last = pos
            add(Vocab.pos(pos), base + pos, bar)
            add(Vocab.pitch(pitch - song.tonic), base + pos, bar)
            add(Vocab.dur(dur), base + pos, bar)
    return np.asarray(toks, np.int64), np.stack(conds) if conds else np.zeros((0, COND_DIM), np.float32)


@dataclass
class MelodyConfig:
    """Hyperparameters of :class:`MelodyNet` (and its numpy twin)."""

    vocab_size: int = Vocab.SIZE
    cond_dim: int = COND_DIM
    embed: int = 96
    hidden: int = 192
    layers: int = 2
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class MelodySampler:
    """The melody network run step by step in numpy (batch of candidates at once).

    Parameters
    ----------
    weights : dict of str to ndarray
        The state dict of :class:`~moodsong.training.song.MelodyNet` (names as saved).
    config : MelodyConfig
    """

    def __init__(self, weights: dict[str, np.ndarray], config: MelodyConfig):
        self.config = config
        w = {k: np.asarray(v, np.float32) for k, v in weights.items()}
        self.embed = w["embed.weight"]
        self.cond_w, self.cond_b = w["cond.weight"].T.copy(), w["cond.bias"]
        self.gru = [(w[f"gru.weight_ih_l{i}"].T.copy(), w[f"gru.weight_hh_l{i}"].T.copy(),
                     w[f"gru.bias_ih_l{i}"], w[f"gru.bias_hh_l{i}"]) for i in range(config.layers)]
        self.out_w, self.out_b = w["out.weight"].T.copy(), w["out.bias"]

    def initial_state(self, batch: int) -> np.ndarray:
        return np.zeros((self.config.layers, batch, self.config.hidden), np.float32)

    def step(self, tokens: np.ndarray, conds: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One step for a batch: ``tokens`` (B,), ``conds`` (B, C), state (L, B, H) -> logits (B, V), new state."""
        x = self.embed[tokens] + conds @ self.cond_w + self.cond_b
        new = np.empty_like(h)
        H = self.config.hidden
        for i, (wih, whh, bih, bhh) in enumerate(self.gru):
            gi = x @ wih + bih
            gh = h[i] @ whh + bhh
            r = _sigmoid(gi[:, :H] + gh[:, :H])
            z = _sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
            n = np.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
            new[i] = (1 - z) * n + z * h[i]
            x = new[i]
        return x @ self.out_w + self.out_b, new
