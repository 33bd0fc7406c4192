"""Frame representations shared by the temporal models (RNN-RBM, WaveNet-NADE).

A *representation* is a small dict stored in a model's config that says what a
frame (one time step, a row of bits) means:

- ``{"kind": "keys", "lowest_pitch": 21, "num_pitches": 88, "steps_per_quarter": 1}``:
  one bit per sounding key -- the polyphonic benchmarks' format (JSB: quarter notes);
- ``{"kind": "note-state", "lowest_pitch": 24, "num_pitches": 78, "steps_per_quarter": 4}``:
  moodsong's ``[held | struck]`` note-state rows (:mod:`moodsong.representation.pianoroll`).
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict

import numpy as np

from moodsong.representation.pianoroll import PianoRollConfig, canonicalize

#: The polyphonic benchmarks' representation: 88 keys from MIDI 21 (A0), one frame per quarter note.
BENCHMARK_REPRESENTATION = {"kind": "keys", "lowest_pitch": 21, "num_pitches": 88, "steps_per_quarter": 1}


def representation_width(rep: dict) -> int:
    """Bits per frame."""
    return rep["num_pitches"] * (1 if rep.get("kind", "keys") == "keys" else 2)


def pianoroll_config(rep: dict | None) -> PianoRollConfig:
    """The note-state settings frames of ``rep`` are written with."""
    return PianoRollConfig.from_dict(rep or BENCHMARK_REPRESENTATION)


def frames_to_roll(frames: np.ndarray, rep: dict | None) -> np.ndarray:
    """Frames -> canonical note-state matrix (``uint8``), ready for ``pianoroll.write_midi``.

    A ``keys`` frame only says which keys sound, so a key sounding in
    consecutive frames becomes one tied note (as in the benchmark data).
    """
    f = np.asarray(frames) > 0.5
    if (rep or BENCHMARK_REPRESENTATION).get("kind", "keys") == "keys":
        f = np.concatenate([f, np.zeros_like(f)], 1)
    return canonicalize(f)


def roll_to_frames(roll: np.ndarray, rep: dict | None) -> np.ndarray:
    """Note-state matrix (in ``rep``'s pitch range and grid) -> ``float32`` frames of ``rep``."""
    roll = np.asarray(roll, np.float32)
    if (rep or BENCHMARK_REPRESENTATION).get("kind", "keys") == "keys":
        return roll[:, : roll.shape[1] // 2]
    return roll


class FrameConfigMixin:
    """What every frame-model config dataclass shares: its frame layout and a JSON round trip."""

    representation: dict | None

    @property
    def pianoroll(self) -> PianoRollConfig:
        """Note-state settings for writing generated frames."""
        return pianoroll_config(self.representation)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


class FrameModelMixin:
    """The generation interface of a temporal model (what :func:`moodsong.models.generate.generate_roll` calls).

    ``config.representation`` must be set; ``sample(num_steps, primer=, cond=,
    temperature=, generator=)`` must return frames, and ``sample_batch(num_steps,
    generators, ...)`` a batch of them (for :meth:`generate_rolls`). Every moodsong model has a
    ``generate_roll(num_steps, *, generator, temperature, primer, ...)`` method
    returning a note-state matrix; the RBM's grows windows (:meth:`moodsong.models.rbm.RBM.generate_roll`).
    """

    def _frame_inputs(self, primer, cond):
        """Primer frames ``(T0, V)`` and a condition as tensors on the model's device and dtype (or ``None``)."""
        import torch

        from moodsong.errors import MoodsongError

        dev = next(self.parameters()).device
        dt = next(self.parameters()).dtype
        p = None
        if primer is not None and len(primer):
            p = torch.as_tensor(np.asarray(primer, np.float32), device=dev, dtype=dt)
            if p.shape[1] != self.config.num_visible:
                raise MoodsongError(f"primer frames are {p.shape[1]} wide, the model expects {self.config.num_visible}")
        c = None if cond is None else torch.as_tensor(np.asarray(cond, np.float32), device=dev, dtype=dt)
        return p, c

    @contextlib.contextmanager
    def _evaluating(self):
        """Eval mode (no dropout) for sampling, then back to the mode the model was in."""
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    def generate_frames(self, num_steps: int, *, generator=None, temperature: float = 1.0, primer=None, cond=None,
                        **kwargs) -> np.ndarray:
        """``num_steps`` new frames (``uint8``, ``(num_steps, V)``) continuing ``primer`` (frames ``(T0, V)``).

        ``cond`` is the conditioning (emotion) vector of length ``cond_dim``; other keywords go to
        ``sample`` (e.g. ``gibbs_steps`` for the RNN-RBM, ``progress``).
        """
        p, c = self._frame_inputs(primer, cond)
        with self._evaluating():
            f = self.sample(num_steps, primer=p, cond=c, temperature=temperature, generator=generator, **kwargs)
        return f.cpu().numpy().astype(np.uint8)

    def generate_roll(self, num_steps: int, *, generator=None, temperature: float = 1.0, primer=None, cond=None,
                      **kwargs) -> np.ndarray:
        """A canonical note-state matrix of ``num_steps`` new steps, continuing ``primer`` (a note-state matrix)."""
        rep = self.config.representation
        frames = roll_to_frames(primer, rep) if primer is not None and len(primer) else None
        f = self.generate_frames(num_steps, generator=generator, temperature=temperature, primer=frames, cond=cond,
                                 **kwargs)
        return frames_to_roll(f, rep)

    def generate_rolls(self, num_steps: int, generators, *, temperature: float = 1.0, primer=None, cond=None,
                       **kwargs) -> list[np.ndarray]:
        """Batched :meth:`generate_roll` (through the model's ``sample_batch``): one matrix per generator.

        ``cond`` is one condition vector for all pieces or an ``(N, cond_dim)`` array; ``primer``
        a note-state matrix every piece continues. Piece ``i`` equals ``generate_roll`` with ``generators[i]``.
        """
        rep = self.config.representation
        frames = roll_to_frames(primer, rep) if primer is not None and len(primer) else None
        p, c = self._frame_inputs(frames, cond)
        with self._evaluating():
            f = self.sample_batch(num_steps, generators, primer=p, cond=c, temperature=temperature, **kwargs)
        return [frames_to_roll(x, rep) for x in f.cpu().numpy()]
