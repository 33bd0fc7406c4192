"""A small temporal CNN that hears emotion in a piece's notes, frame by frame.

The hand-made features of :mod:`moodsong.emotion.music` summarise a whole piece
in 18 numbers; this model reads how the music moves. A piece becomes a
sequence of frames (``hop`` seconds each, through the score's tempo map) with
30 channels:

- 0..11   pitch classes sounding in the frame (notes per class, capped at 3, / 3);
- 12..23  pitch-class onsets weighted by velocity (``log1p`` of sum velocity / 127);
- 24      onsets (``log1p`` count); 25 mean onset velocity / 127;
- 26      polyphony (``log1p`` notes sounding);
- 27, 28  lowest and highest sounding pitch, ``(p - 60) / 12``; 29 silence flag.

Three dilated 1-D convolutions (receptive field about 29 frames, i.e. 14 s at
the default 0.5 s hop) with residual connections are pooled over time by
attention and by mean, then a linear layer gives quadrant logits.
Transposition is the training augmentation: it shifts the pitch-class
channels and the register channels together, and a listener hears the same
emotion in any key.

The model is tiny (about 15 k parameters, float16 safetensors) so compose can
score several candidates per request on a CPU. Training uses torch
(:func:`fit_music_cnn`); scoring is a numpy forward pass of the same weights
(:func:`cnn_logits`, same probabilities to 1e-6, ``tests/test_music_cnn.py``), so
compose's path never imports torch (2.4 s of a cold start on the 2-core machine).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

NUM_CHANNELS = 30


@dataclass
class MusicCNNConfig:
    """Hyperparameters of :class:`MusicCNN` and of its training.

    Attributes
    ----------
    hop : float
        Frame length in seconds.
    hidden : int
        Channels of the convolutions.
    dropout : float
    crop : int
        Training crop length in frames (random crops are an augmentation).
    epochs, batch_size : int
    lr, weight_decay : float
        Peak learning rate of the one-cycle schedule; AdamW decoupled weight decay.
    label_smoothing : float
    """

    hop: float = 0.5
    hidden: int = 32
    dropout: float = 0.3
    crop: int = 32
    epochs: int = 25
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-2
    label_smoothing: float = 0.1


def note_frames(onset: np.ndarray, duration: np.ndarray, pitch: np.ndarray, velocity: np.ndarray,
                hop: float = 0.5, shift: int = 0) -> np.ndarray:
    """Frame features ``(30, frames)`` float32 of notes given in seconds (see the module docstring).

    ``shift`` transposes by that many semitones first (training augmentation).
    """
    on = np.asarray(onset, np.float64)
    on = on - on.min()
    du = np.asarray(duration, np.float64)
    p = np.asarray(pitch, np.int64) + shift
    v = np.asarray(velocity, np.float64)
    T = int(np.ceil((on + du).max() / hop)) + 1
    X = np.zeros((NUM_CHANNELS, T), np.float32)
    a = (on / hop).astype(np.int64)
    b = np.maximum(((on + du) / hop).astype(np.int64), a) + 1
    pc = p % 12
    lo = np.full(T, 200.0)
    hi = np.full(T, -1.0)
    # Sounding notes per frame: difference arrays avoid a Python loop over frames.
    diff = np.zeros((13, T + 1))
    np.add.at(diff, (pc, a), 1.0)
    np.add.at(diff, (pc, b), -1.0)
    np.add.at(diff, (12, a), 1.0)
    np.add.at(diff, (12, b), -1.0)
    sounding = np.cumsum(diff, axis=1)[:, :T]
    for i in range(p.size):  # lowest/highest pitch: a short loop over notes (hundreds per clip)
        lo[a[i]:b[i]] = np.minimum(lo[a[i]:b[i]], p[i])
        hi[a[i]:b[i]] = np.maximum(hi[a[i]:b[i]], p[i])
    X[:12] = np.minimum(sounding[:12], 3) / 3
    np.add.at(X, (12 + pc, a), v / 127.0)
    X[12:24] = np.log1p(X[12:24])
    count = np.bincount(a, minlength=T)[:T].astype(np.float64)
    X[25] = np.bincount(a, weights=v / 127.0, minlength=T)[:T] / np.maximum(count, 1)
    X[24] = np.log1p(count)
    X[26] = np.log1p(sounding[12])
    snd = hi >= 0
    X[27] = np.where(snd, (lo - 60) / 12, 0)
    X[28] = np.where(snd, (hi - 60) / 12, 0)
    X[29] = ~snd
    return X


def _define_torch_model():
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class MusicCNN(nn.Module):
        """Dilated residual 1-D CNN with attention + mean pooling -> 4 quadrant logits (training form)."""

        def __init__(self, config: MusicCNNConfig):
            super().__init__()
            self.config = config
            h = config.hidden
            self.c1 = nn.Conv1d(NUM_CHANNELS, h, 5, padding=2)
            self.c2 = nn.Conv1d(h, h, 5, padding=4, dilation=2)
            self.c3 = nn.Conv1d(h, h, 5, padding=8, dilation=4)
            self.att = nn.Conv1d(h, 1, 1)  # frame weights: which moments carry the emotion
            self.head = nn.Linear(2 * h, 4)
            self.drop = nn.Dropout(config.dropout)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            """``x``: ``(batch, 30, frames)`` -> logits ``(batch, 4)``."""
            x = self.drop(F.relu(self.c1(x)))
            x = self.drop(F.relu(self.c2(x)) + x)
            x = F.relu(self.c3(x)) + x
            w = torch.softmax(self.att(x), dim=-1)
            pooled = torch.cat([(x * w).sum(-1), x.mean(-1)], dim=1)
            return self.head(self.drop(pooled))

    return MusicCNN


def __getattr__(name: str):
    # ``MusicCNN`` (a torch module) is defined on first use, so that importing this module needs no torch.
    if name == "MusicCNN":
        globals()["MusicCNN"] = cls = _define_torch_model()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _conv1d(x: np.ndarray, w: np.ndarray, b: np.ndarray, dilation: int, padding: int) -> np.ndarray:
    """torch's Conv1d for one sequence: ``x`` (C_in, T), ``w`` (C_out, C_in, K) -> (C_out, T')."""
    K = w.shape[2]
    xp = np.pad(x, ((0, 0), (padding, padding)))
    T = xp.shape[1] - dilation * (K - 1)
    out = w[:, :, 0] @ xp[:, :T]
    for k in range(1, K):  # one matmul per tap: T is a few hundred frames, channels 32
        out += w[:, :, k] @ xp[:, k * dilation:k * dilation + T]
    return out + b[:, None]


def cnn_logits(state: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Quadrant logits ``(4,)`` of one piece's frames ``x`` (30, frames): MusicCNN's eval forward in numpy.

    ``state`` is the torch module's state dict as float32 arrays.
    """
    relu = lambda z: np.maximum(z, 0)  # noqa: E731
    h = relu(_conv1d(x, state["c1.weight"], state["c1.bias"], 1, 2))
    h = relu(_conv1d(h, state["c2.weight"], state["c2.bias"], 2, 4)) + h
    h = relu(_conv1d(h, state["c3.weight"], state["c3.bias"], 4, 8)) + h
    a = (state["att.weight"][:, :, 0] @ h + state["att.bias"][:, None])[0]  # (frames,)
    a = np.exp(a - a.max())
    a /= a.sum()
    pooled = np.concatenate([h @ a, h.mean(1)])
    return state["head.weight"] @ pooled + state["head.bias"]


def fit_music_cnn(pieces: Sequence[tuple], quadrants: Sequence[int], config: MusicCNNConfig, seed: int = 0,
                  progress: bool = False):
    """Train one :class:`MusicCNN`.

    Parameters
    ----------
    pieces : sequence of (onset, duration, pitch, velocity) arrays, seconds / MIDI numbers
    quadrants : labels 1..4
    """
    import torch
    import torch.nn.functional as F
    from tqdm.auto import trange

    MusicCNN = _define_torch_model()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    shifts = range(-6, 6)  # every key once; register moves at most half an octave
    frames = {s: [note_frames(*p, hop=config.hop, shift=s) for p in pieces] for s in shifts}
    y = torch.as_tensor(np.asarray(quadrants) - 1)
    n, bs, L = len(pieces), config.batch_size, config.crop
    net = MusicCNN(config)
    opt = torch.optim.AdamW(net.parameters(), config.lr, weight_decay=config.weight_decay)
    per_epoch = n // bs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, config.lr, total_steps=config.epochs * per_epoch)
    net.train()
    for _ in trange(config.epochs, desc="music CNN", unit="epoch", disable=not progress):
        perm = rng.permutation(n)
        for b in range(per_epoch):
            idx = perm[b * bs:(b + 1) * bs]
            xs = []
            for i in idx:
                X = frames[int(rng.integers(-6, 6))][i]
                T = X.shape[1]
                if T > L:
                    t0 = int(rng.integers(0, T - L + 1))
                    X = X[:, t0:t0 + L]
                else:
                    X = np.pad(X, ((0, 0), (0, L - T)))
                xs.append(X)
            loss = F.cross_entropy(net(torch.from_numpy(np.stack(xs))), y[idx], label_smoothing=config.label_smoothing)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


class MusicCNNEnsemble:
    """Several MusicCNNs (different seeds) whose probabilities are averaged.

    Parameters
    ----------
    nets : sequence of torch ``MusicCNN`` modules or of their state dicts as numpy arrays
        Kept as float32 numpy state dicts; scoring runs in numpy.
    config : MusicCNNConfig
    """

    def __init__(self, nets: Sequence, config: MusicCNNConfig):
        self.nets = [self._numpy_state(n) for n in nets]
        self.config = config

    @staticmethod
    def _numpy_state(net) -> dict[str, np.ndarray]:
        state = net.state_dict() if hasattr(net, "state_dict") else net
        return {k: np.array(v.detach().cpu().numpy() if hasattr(v, "detach") else v, dtype=np.float32)
                for k, v in state.items()}

    def predict_proba(self, onset, duration, pitch, velocity) -> np.ndarray:
        """Quadrant probabilities ``(4,)`` of one piece."""
        x = note_frames(onset, duration, pitch, velocity, hop=self.config.hop)
        probs = []
        for state in self.nets:
            z = cnn_logits(state, x).astype(np.float64)  # float64: sums to 1 exactly enough
            e = np.exp(z - z.max())
            probs.append(e / e.sum())
        return np.mean(probs, axis=0)

    def save(self, path: str | os.PathLike) -> Path:
        """float16 safetensors; the config goes into the file's metadata."""
        from safetensors.numpy import save_file

        from moodsong.fileio import atomic_path

        tensors = {f"{k}.{name}": np.ascontiguousarray(t.astype(np.float16)) for k, n in enumerate(self.nets)
                   for name, t in n.items()}
        meta = {"config": json.dumps(asdict(self.config)), "members": str(len(self.nets))}
        path = Path(path)
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> MusicCNNEnsemble:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata()
            config = MusicCNNConfig(**json.loads(meta["config"]))
            members = int(meta["members"])
            nets = [{} for _ in range(members)]
            for key in f.keys():
                k, name = key.split(".", 1)
                nets[int(k)][name] = f.get_tensor(key).astype(np.float32)
        for state in nets:
            missing = {f"{c}.{w}" for c in ("c1", "c2", "c3", "att", "head") for w in ("weight", "bias")} - set(state)
            if missing:
                raise ValueError(f"missing weights {sorted(missing)}")
        return cls(nets, config)
