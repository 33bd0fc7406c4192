"""The melody model: a chord-conditioned GRU over bar / position / pitch / duration events.

A melody is written as REMI events (Huang & Yang 2020, the Pop Music Transformer's
representation), tokenized by MidiTok's ``REMI`` (:func:`make_tokenizer`): ``Bar`` opens each
bar, then every note is three tokens, its onset ``Position_p`` (sixteenth step 0-15 in the bar),
``Pitch_k`` and ``Duration_b.s.4`` (beats and sixteenths, up to 12 beats). Pitches are
key-relative: every melody is transposed from its own key to C before it is tokenized, so
``Pitch_60`` is the tonic at middle C and the model learns scale degrees, not absolute pitches.

Unlike MidiTok's REMI with chords, chords are not tokens that the model writes: the harmonic plan
is chosen first (:mod:`moodsong.song.plan`), and each input token carries the chord sounding at
its time as a condition (root and quality relative to the key, its pitch classes, the bar's place
in its 4-bar phrase, the mode and a note-density class). MidiTok's chord tokens are detected from
the notes, so they would have to be overwritten by the plan at every bar.

Why MidiTok and not a hand-written vocabulary: on 40 POP909 validation melodies
(``bench/melody_tokens.py``) its REMI is as compact (14.0 tokens per bar, 3.23 per note) and
reads every kept note back with its exact onset, pitch and duration, where the hand-written
events used before rounded 6.5 % of the durations to one of ten lengths.

The token list is kept in the model's JSON (:class:`Vocab`), so sampling needs neither MidiTok nor
torch. The network (:class:`MelodyNet`) is an embedding plus a linear map of the condition, two GRU
layers and a linear output. It is trained with PyTorch (:mod:`moodsong.training.song`) and
sampled with numpy alone (:class:`MelodySampler`).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np

from moodsong.corpora.pop909 import STEPS_PER_BAR, PopSong
from moodsong.song.plan import QUALITY_NAMES, quality_index

__all__ = ["Vocab", "MelodyConfig", "song_events", "melody_condition", "COND_DIM", "MelodySampler",
           "make_tokenizer", "standard_vocab", "model_ids", "TOKENIZER_CONFIG"]

#: MidiTok REMI settings: sixteenth positions (and durations up to 12 beats in sixteenths), pitches
#: A0..C8, no velocity, tempo, time-signature, program or chord tokens.
TOKENIZER_CONFIG = {"beat_res": {(0, 4): 4, (4, 12): 4}, "pitch_range": (21, 109), "use_velocities": False,
                    "use_chords": False, "use_programs": False, "use_tempos": False,
                    "use_time_signatures": False, "use_rests": False}
SPECIAL, BAR, POSITION, PITCH, DURATION = range(5)


def make_tokenizer():
    """The MidiTok REMI tokenizer of the melody events (:data:`TOKENIZER_CONFIG`)."""
    import miditok

    return miditok.REMI(miditok.TokenizerConfig(**TOKENIZER_CONFIG))


@functools.cache
def standard_vocab() -> tuple[str, ...]:
    """The tokenizer's tokens in id order (what a new model is trained with)."""
    vocab = _tokenizer().vocab
    return tuple(sorted(vocab, key=vocab.get))


class Vocab:
    """Token ids of the melody events, read from the token strings (``Bar_None``, ``Position_4``, ...).

    Parameters
    ----------
    tokens : sequence of str
        MidiTok REMI's tokens in id order.

    Attributes
    ----------
    kind : ndarray of int
        Per id: :data:`SPECIAL`, :data:`BAR`, :data:`POSITION`, :data:`PITCH` or :data:`DURATION`.
    value : ndarray of int
        Per id: the position (sixteenth step in the bar), the key-relative pitch, or the duration in
        sixteenth steps; 0 for the rest.
    bar : int
        The id of ``Bar_None``.
    """

    def __init__(self, tokens):
        self.tokens = tuple(tokens)
        n = len(self.tokens)
        self.kind = np.full(n, SPECIAL, np.int64)
        self.value = np.zeros(n, np.int64)
        for i, tok in enumerate(self.tokens):
            name, _, val = tok.partition("_")
            if name == "Bar":
                self.kind[i] = BAR
            elif name == "Position":
                self.kind[i], self.value[i] = POSITION, int(val)
            elif name == "Pitch":
                self.kind[i], self.value[i] = PITCH, int(val)
            elif name == "Duration":
                beats, sub, res = (int(x) for x in val.split("."))
                self.kind[i], self.value[i] = DURATION, round((beats + sub / res) * 4)
        bars = np.flatnonzero(self.kind == BAR)
        if len(bars) != 1 or not (self.kind == POSITION).any() or not (self.kind == DURATION).any():
            raise ValueError("not a REMI vocabulary (needs one Bar token, Position and Duration tokens)")
        self.bar = int(bars[0])
        self.size = n
        self.pitch_ids = np.flatnonzero(self.kind == PITCH)
        self.duration_ids = np.flatnonzero(self.kind == DURATION)
        self.position_id = {int(self.value[i]): int(i) for i in np.flatnonzero(self.kind == POSITION)}

    def __len__(self) -> int:
        return self.size


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


def song_events(song: PopSong, start_bar: int = 0, num_bars: int | None = None,
                vocab: Vocab | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Tokens and per-token conditions of a song's melody, bars ``start_bar`` .. + ``num_bars``.

    The melody is made one voice (a second onset on one step is dropped), transposed to C and
    tokenized by MidiTok; every bar of the span gets its ``Bar`` token, also the empty ones.
    ``vocab`` (a model's) numbers the tokens; default: the tokenizer's own ids.

    Returns
    -------
    tokens : ndarray of int64, shape (T,)
    conds : ndarray of float32, shape (T, COND_DIM)
    """
    import symusic

    tok = _tokenizer()
    end_bar = song.num_bars if num_bars is None else start_bar + num_bars
    mel = song.melody
    sounding = np.unique(mel[:, 0] // STEPS_PER_BAR) if len(mel) else np.zeros(0)
    density = density_class(len(mel) / max(len(sounding), 1))
    minor = song.mode == "minor"
    lo, hi = start_bar * STEPS_PER_BAR, end_bar * STEPS_PER_BAR
    keep = mel[(mel[:, 0] >= lo) & (mel[:, 0] < hi)] if len(mel) else mel
    if len(keep):
        keep = keep[np.lexsort((keep[:, 2], keep[:, 0]))]
        keep = keep[np.r_[True, keep[1:, 0] != keep[:-1, 0]]]  # one voice
    score = symusic.Score(_TPQ)
    track = symusic.Track("melody", 0, False)
    if len(keep):
        pitch = np.clip(keep[:, 2] - song.tonic, *TOKENIZER_CONFIG["pitch_range"])
        track.notes = symusic.Note.from_numpy(((keep[:, 0] - lo) * _TPS).astype(np.int32),
                                              (np.maximum(keep[:, 1], 1) * _TPS).astype(np.int32),
                                              pitch.astype(np.int8), keep[:, 3].astype(np.int8))
    score.tracks.append(track)
    ids, times = [], []
    if len(keep):
        seq = tok.encode(score)
        seq = seq[0] if isinstance(seq, list) else seq
        res = tok.config.max_num_pos_per_beat  # event times are in ticks of this resolution per beat
        for i, ev in zip(seq.ids, seq.events):
            ids.append(int(i))
            times.append(int(ev.time) * 4 // res)
    bar_id = tok.vocab["Bar_None"]
    have = sum(1 for i in ids if i == bar_id)
    missing = (end_bar - start_bar) - have  # bars after the last note (MidiTok stops at it)
    ids += [bar_id] * missing
    times += [(have + k) * STEPS_PER_BAR for k in range(missing)]
    starts = np.array([c.start for c in song.chords])
    conds, cache = [], {}
    bar_no = -1
    for i, t in zip(ids, times):
        if i == bar_id:
            bar_no += 1
            t = bar_no * STEPS_PER_BAR
        step = lo + t
        j = int(np.searchsorted(starts, step, side="right")) - 1
        ch = song.chords[j] if j >= 0 and step < song.chords[j].end else None
        bar = start_bar + bar_no
        key = (-1 if ch is None else j, bar % 4)
        if key not in cache:
            cache[key] = melody_condition(None if ch is None else (ch.root - song.tonic) % 12,
                                          None if ch is None else ch.quality, bar, minor, density)
        conds.append(cache[key])
    ids = np.asarray(ids, np.int64) if vocab is None else model_ids(ids, vocab)
    return ids, np.stack(conds) if conds else np.zeros((0, COND_DIM), np.float32)


def model_ids(ids, vocab: Vocab) -> np.ndarray:
    """The tokenizer's ids as ``vocab``'s (the same, unless the model was trained with another token list)."""
    ids = np.asarray(ids, np.int64)
    names = standard_vocab()
    if vocab.tokens == names:
        return ids
    index = {s: i for i, s in enumerate(vocab.tokens)}
    return np.array([index[names[i]] for i in ids], np.int64)


_TPQ = 480
_TPS = _TPQ // 4  # ticks per sixteenth step


@functools.cache
def _tokenizer():
    return make_tokenizer()


@dataclass
class MelodyConfig:
    """Hyperparameters of :class:`MelodyNet` (and its numpy twin)."""

    vocab: tuple[str, ...] = ()  # the event tokens in id order; empty: MidiTok's (standard_vocab)
    cond_dim: int = COND_DIM
    embed: int = 96
    hidden: int = 192
    layers: int = 2
    dropout: float = 0.1

    def __post_init__(self):
        self.vocab = tuple(self.vocab) or standard_vocab()

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

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
