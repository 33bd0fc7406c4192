"""Corpora: where training music comes from, prepared once and cached.

A source is a MIDI folder or file, a built-in music21 corpus, or a polyphonic-benchmark
file: a ``dict`` of ``train``/``valid``/``test``, each a list of sequences of time steps,
each a tuple of MIDI pitches (e.g. JSB Chorales; add ``:valid`` or ``:test`` to pick a
split, default ``train``). Which files a source names and how they are parsed is
:mod:`moodsong.corpora.sources` (shared with :mod:`moodsong.corpora.shards`, listed there in full).
Preparation runs in its process pool with a progress bar. Its result is cached under a
key made of the inputs' content and the representation settings, so a second run is
instant. A file that cannot be read is skipped and reported; it never stops the run.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from moodsong import __version__
from moodsong.corpora.sources import (  # noqa: F401  (BUILTIN ... music21_to_roll: importable from here as before)
    BUILTIN,
    MIDI_SUFFIXES,
    SPLITS,
    default_cache_dir,
    default_workers,
    is_split_spec,
    list_inputs,
    music21_corpus_root,
    music21_to_roll,
    parse_files,
    skipped_lines,
)
from moodsong.errors import MoodsongError
from moodsong.fileio import atomic_path, write_text_atomic
from moodsong.representation.pianoroll import PianoRollConfig, notes_to_roll, roll_windows, song_windows

# Bumped whenever parsing changes in a way that alters cached results.
_CACHE_FORMAT = 1


@dataclass
class Corpus:
    """Pieces as note-state matrices.

    Attributes
    ----------
    names : list of str
        One name per piece (file path relative to the source, ``#n`` for the n-th tune of a file).
    rolls : list of numpy.ndarray
        ``uint8`` matrices of shape ``(T_i, config.width)``.
    config : PianoRollConfig
    skipped : list of (str, str)
        Inputs that could not be read, with the reason.
    """

    names: list[str]
    rolls: list[np.ndarray]
    config: PianoRollConfig
    skipped: list[tuple[str, str]] = field(default_factory=list)
    source: str = ""

    def __len__(self) -> int:
        return len(self.rolls)

    @property
    def total_steps(self) -> int:
        return int(sum(r.shape[0] for r in self.rolls))

    def windows(self, num_timesteps: int, *, skip_first: bool = False) -> np.ndarray:
        """Non-overlapping windows of ``num_timesteps`` steps, flattened to ``(N, num_timesteps * width)``.

        ``skip_first=True`` reproduces the demo's bug of dropping each song's
        first window; it exists only for the faithful benchmark.
        """
        out = [roll_windows(r, num_timesteps, skip_first=skip_first) for r in self.rolls if r.shape[0] >= num_timesteps]
        if not out:
            return np.zeros((0, num_timesteps * self.config.width), np.uint8)
        return np.concatenate(out)

    def song_windows(self, num_timesteps: int) -> list[np.ndarray]:
        """Windows grouped by song (the demo trained song by song)."""
        return song_windows(self.rolls, num_timesteps)

    def summary(self) -> str:
        lines = [f"{len(self)} pieces, {self.total_steps} steps ({self.config.steps_per_quarter} per quarter, "
                 f"pitches {self.config.lowest_pitch}..{self.config.highest_pitch})"]
        return "\n".join(lines + skipped_lines(self.skipped))


# --------------------------------------------------------------------------- sources


def _shard_threshold() -> int:
    from moodsong.corpora.shards import SHARD_THRESHOLD

    return SHARD_THRESHOLD


class _SafeUnpickler(pickle.Unpickler):
    """Unpickle benchmark files without running arbitrary code: only numpy scalars and builtins."""

    _ALLOWED = {
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("_codecs", "encode"),  # protocol-2 pickles store numpy scalar bytes this way
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("__builtin__", "set"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a benchmark pickle")


def load_polyphonic(path: str | os.PathLike) -> dict[str, list[list[tuple[int, ...]]]]:
    """Load a polyphonic-benchmark file (pickle or JSON): ``{split: [sequence of pitch tuples]}``.

    Raises
    ------
    MoodsongError
        If the file is missing, unreadable, or not in the benchmark layout.
    """
    path = Path(path)
    if not path.is_file():
        raise MoodsongError(f"{path}: no such file")
    try:
        raw = path.read_bytes()
        if path.suffix.lower() == ".json":
            data = json.loads(raw)
        else:
            data = _SafeUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except Exception as exc:
        raise MoodsongError(f"{path}: cannot read benchmark file ({exc})") from None
    if not isinstance(data, dict) or not any(k in data for k in SPLITS):
        raise MoodsongError(f"{path}: expected a dict with 'train'/'valid'/'test' splits")
    out = {}
    for split in SPLITS:
        seqs = data.get(split, [])
        try:
            out[split] = [[tuple(int(p) for p in step) for step in seq] for seq in seqs]
        except Exception:
            raise MoodsongError(f"{path}: split {split!r} is not a list of sequences of pitch tuples") from None
    return out


def sequences_to_pianoroll(
    seqs: Sequence[Sequence[Iterable[int]]], low: int = 21, num_pitches: int = 88
) -> list[np.ndarray]:
    """Benchmark sequences -> plain binary piano rolls ``(T, num_pitches)`` (default 88 keys, MIDI 21..108)."""
    rolls = []
    for seq in seqs:
        r = np.zeros((len(seq), num_pitches), np.float32)
        for t, step in enumerate(seq):
            for p in step:
                if low <= p < low + num_pitches:
                    r[t, p - low] = 1.0
        rolls.append(r)
    return rolls


def sequences_to_rolls(
    seqs: Sequence[Sequence[Iterable[int]]], config: PianoRollConfig, steps_per_frame: int = 1
) -> list[np.ndarray]:
    """Benchmark sequences -> note-state matrices.

    The benchmark stores only which pitches sound in each frame, not strikes;
    a pitch is taken as struck where it starts sounding. Each frame becomes
    ``steps_per_frame`` steps (JSB frames are quarter notes, so 4 gives sixteenths).
    """
    out = []
    for seq in seqs:
        starts, ends, pitches = [], [], []
        active: dict[int, int] = {}
        for t, step in enumerate(list(seq) + [()]):
            now = set(step)
            for p in list(active):
                if p not in now:
                    starts.append(active.pop(p))
                    ends.append(t)
                    pitches.append(p)
            for p in now:
                active.setdefault(p, t)
        r = notes_to_roll(np.array(starts, np.int64) * steps_per_frame, np.array(ends, np.int64) * steps_per_frame,
                          np.array(pitches, np.int64), config)
        want = len(seq) * steps_per_frame
        if r.shape[0] < want:
            r = np.concatenate([r, np.zeros((want - r.shape[0], config.width), np.uint8)])
        out.append(r)
    return out


# --------------------------------------------------------------------------- cache


def _cache_key(kind: str, root: Path, files: list[Path], config: PianoRollConfig, extra: str = "") -> str:
    h = hashlib.sha256()
    settings = {"format": _CACHE_FORMAT, "kind": kind, "config": config.to_dict(), "extra": extra}
    h.update(json.dumps(settings, sort_keys=True).encode())
    for f in files:
        h.update(str(f.relative_to(root) if f.is_relative_to(root) else f.name).encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:32]


def _save_cache(folder: Path, corpus: Corpus) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lengths = np.array([r.shape[0] for r in corpus.rolls], np.int64)
    flat = np.concatenate(corpus.rolls) if corpus.rolls else np.zeros((0, corpus.config.width), np.uint8)
    with atomic_path(folder / "rolls.npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, flat)
    with atomic_path(folder / "lengths.npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, lengths)
    # meta.json is written last: its presence marks a complete cache entry.
    meta = {"names": corpus.names, "skipped": corpus.skipped, "config": corpus.config.to_dict(),
            "source": corpus.source, "moodsong": __version__}
    write_text_atomic(folder / "meta.json", json.dumps(meta))


def _load_cache(folder: Path) -> Corpus | None:
    try:
        meta = json.loads((folder / "meta.json").read_text())
        flat = np.load(folder / "rolls.npy", mmap_mode="r")
        lengths = np.load(folder / "lengths.npy")
    except (OSError, ValueError):
        return None
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    rolls = [flat[offsets[i]: offsets[i + 1]] for i in range(len(lengths))]
    return Corpus(meta["names"], rolls, PianoRollConfig.from_dict(meta["config"]),
                  [tuple(x) for x in meta["skipped"]], meta.get("source", ""))


# --------------------------------------------------------------------------- entry point


def load_corpus(
    source: str | os.PathLike,
    config: PianoRollConfig = PianoRollConfig(),
    *,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    workers: int | None = None,
    progress: bool = True,
) -> Corpus:
    """Prepare a corpus (see the module docstring for sources), using the cache when possible.

    Raises
    ------
    MoodsongError
        If the source does not exist, holds no MIDI, or nothing in it could be read.
    """
    source = str(source)
    root, files, kind = list_inputs(source)
    if kind == "shards" or (kind != "polyphonic" and use_cache and len(files) >= _shard_threshold()):
        # Large sources stream into memory-mapped shards instead of one in-memory cache entry.
        from moodsong.corpora.shards import ShardedCorpus, prepare_shards

        if kind == "shards":
            return ShardedCorpus(root)
        return prepare_shards(source, config, cache_dir=cache_dir, workers=workers, progress=progress)
    if kind == "polyphonic":
        split = source.rpartition(":")[2] if is_split_spec(source) else "train"
        data = load_polyphonic(files[0])
        seqs = data[split]
        if not seqs:
            raise MoodsongError(f"{files[0]}: split {split!r} is empty")
        rolls = sequences_to_rolls(seqs, config, steps_per_frame=max(1, config.steps_per_quarter))
        return Corpus([f"{files[0].name}:{split}:{i}" for i in range(len(rolls))], rolls, config, [], source)

    key = _cache_key(kind, root, files, config)
    folder = Path(cache_dir or default_cache_dir()) / "corpora" / key
    if use_cache:
        cached = _load_cache(folder)
        if cached is not None:
            return cached

    tasks = [(str(f), str(f.relative_to(root))) for f in files]
    workers = workers if workers is not None else default_workers()
    # Process start-up costs more than parsing a few small MIDI files.
    if kind == "midi" and len(tasks) < 256:
        workers = 1
    results: list[tuple[str, np.ndarray | None, str]] = []
    bar = tqdm(total=len(tasks), desc=f"preparing {Path(source).name}", unit="file", disable=not progress)
    for _, parsed in parse_files(kind, tasks, config, workers=workers,
                                 files_per_task=max(1, len(tasks) // (max(workers, 1) * 16))):
        results.extend(parsed)
        bar.update()
    bar.close()

    names, rolls, skipped = [], [], []
    for name, roll, why in results:
        if roll is None:
            skipped.append((name, why))
        elif roll.shape[0] == 0:
            skipped.append((name, "no notes in the pitch range"))
        else:
            names.append(name)
            rolls.append(roll)
    corpus = Corpus(names, rolls, config, skipped, source)
    if not rolls:
        raise MoodsongError(f"{source}: none of {len(tasks)} input(s) could be read\n" + corpus.summary())
    if use_cache:
        try:
            _save_cache(folder, corpus)
        except OSError:
            pass  # a read-only cache folder only costs speed
    return corpus
