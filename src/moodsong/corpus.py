"""Corpora: where training music comes from, prepared once and cached.

Sources
-------
- a folder of ``.mid``/``.midi`` files (searched recursively) or a single MIDI file;
- a built-in corpus shipped inside music21 (no download): ``bach`` (the Bach
  chorales), ``nottingham`` (the Nottingham folk-collection sample music21
  ships), ``ryans`` (Ryan's Mammoth Collection), ``oneills`` (O'Neill's 1850),
  ``essen`` (Essen folk songs);
- a polyphonic-benchmark pickle or JSON (``dict`` of ``train``/``valid``/``test``,
  each a list of sequences of time steps, each a tuple of MIDI pitches), e.g.
  JSB Chorales. Add ``:valid`` or ``:test`` to pick a split (default ``train``).

Preparation runs in a process pool with a progress bar. Its result is cached
under a key made of the inputs' content and the representation settings, so a
second run is instant. A file that cannot be read is skipped and reported; it
never stops the run.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from tqdm.auto import tqdm

from . import __version__
from .errors import MoodsongError
from .fileio import atomic_path, write_text_atomic
from .pianoroll import PianoRollConfig, midi_to_roll, notes_to_roll

MIDI_SUFFIXES = (".mid", ".midi", ".kar", ".smf")
SPLITS = ("train", "valid", "test")

#: Built-in corpora: name -> (folders inside music21's corpus, file suffixes).
BUILTIN = {
    "bach": (("bach",), (".mxl", ".xml", ".krn")),
    "nottingham": (("nottingham-dataset",), (".abc",)),
    "ryans": (("ryansMammoth",), (".abc",)),
    "oneills": (("oneills1850",), (".abc",)),
    "essen": (("essenFolksong",), (".abc",)),
}

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
        out = []
        for r in self.rolls:
            n = r.shape[0] // num_timesteps
            if n == 0:
                continue
            w = np.asarray(r[: n * num_timesteps]).reshape(n, num_timesteps * r.shape[1])
            out.append(w[1:] if skip_first else w)
        if not out:
            return np.zeros((0, num_timesteps * self.config.width), np.uint8)
        return np.concatenate(out)

    def song_windows(self, num_timesteps: int) -> list[np.ndarray]:
        """Windows grouped by song (the demo trained song by song)."""
        return song_windows(self.rolls, num_timesteps)

    def summary(self) -> str:
        lines = [f"{len(self)} pieces, {self.total_steps} steps ({self.config.steps_per_quarter} per quarter, "
                 f"pitches {self.config.lowest_pitch}..{self.config.highest_pitch})"]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} unreadable input(s):")
            lines += [f"  {name}: {reason}" for name, reason in self.skipped]
        return "\n".join(lines)


def song_windows(rolls: Sequence[np.ndarray], num_timesteps: int) -> list[np.ndarray]:
    """Per piece, its non-overlapping windows flattened to ``(n_i, num_timesteps * width)``; short pieces are left out."""
    out = []
    for r in rolls:
        n = r.shape[0] // num_timesteps
        if n:
            out.append(np.asarray(r[: n * num_timesteps]).reshape(n, -1))
    return out


# --------------------------------------------------------------------------- sources


def default_cache_dir() -> Path:
    """``$MOODSONG_CACHE``, else ``$XDG_CACHE_HOME/moodsong``, else ``~/.cache/moodsong``."""
    if os.environ.get("MOODSONG_CACHE"):
        return Path(os.environ["MOODSONG_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "moodsong"


def music21_corpus_root() -> Path:
    import music21.corpus

    return Path(music21.corpus.__file__).parent


def list_inputs(source: str) -> tuple[Path, list[Path], str]:
    """Resolve a source to ``(root, files, kind)`` with kind ``midi``, ``music21``, ``polyphonic`` or ``shards``."""
    name = str(source)
    if name in BUILTIN:
        folders, suffixes = BUILTIN[name]
        root = music21_corpus_root()
        files = sorted(
            p for f in folders for p in (root / f).rglob("*") if p.is_file() and p.suffix.lower() in suffixes
        )
        if not files:
            raise MoodsongError(f"built-in corpus {name!r} is empty in this music21 installation")
        return root, files, "music21"
    path = Path(name.rsplit(":", 1)[0] if _is_split_spec(name) else name)
    if path.is_dir() and (path / "index.json").is_file() and (path / "prepare.json").is_file():
        return path, [path / "index.json"], "shards"  # a prepared sharded corpus (moodsong.shards)
    if path.suffix.lower() in (".pkl", ".pickle", ".json") and path.is_file():
        return path.parent, [path], "polyphonic"
    if not path.exists():
        known = ", ".join(BUILTIN)
        raise MoodsongError(f"{path}: no such file or folder (built-in corpora: {known})")
    if path.is_file():
        return path.parent, [path], "midi"
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MIDI_SUFFIXES)
    if not files:
        raise MoodsongError(f"{path}: no MIDI files (.mid/.midi) in this folder or below it")
    return path, files, "midi"


def _shard_threshold() -> int:
    from .shards import SHARD_THRESHOLD

    return SHARD_THRESHOLD


def _is_split_spec(name: str) -> bool:
    head, _, tail = name.rpartition(":")
    return bool(head) and tail in SPLITS and Path(head).suffix.lower() in (".pkl", ".pickle", ".json")


# --------------------------------------------------------------------------- parsing


def _parse_midi(args: tuple[str, str, PianoRollConfig]) -> list[tuple[str, np.ndarray | None, str]]:
    path, name, config = args
    try:
        return [(name, midi_to_roll(path, config), "")]
    except Exception as exc:  # one bad file must never stop the run
        return [(name, None, str(exc).removeprefix(f"{path}: "))]


def _parse_music21(args: tuple[str, str, PianoRollConfig]) -> list[tuple[str, np.ndarray | None, str]]:
    path, name, config = args
    try:
        import music21

        parsed = music21.converter.parse(path)
        scores = list(parsed.scores) if isinstance(parsed, music21.stream.Opus) else [parsed]
        out = []
        for i, sc in enumerate(scores):
            tune = f"{name}#{i}" if len(scores) > 1 else name
            try:
                out.append((tune, music21_to_roll(sc, config), ""))
            except Exception as exc:
                out.append((tune, None, str(exc)))
        return out
    except Exception as exc:
        return [(name, None, str(exc) or type(exc).__name__)]


def music21_to_roll(stream, config: PianoRollConfig = PianoRollConfig()) -> np.ndarray:
    """Note-state matrix of a music21 stream (ties merged, offsets in quarter notes)."""
    spq = config.steps_per_quarter
    starts, ends, pitches = [], [], []
    for n in stream.stripTies().flatten().notes:
        on = float(n.offset)
        off = on + float(n.quarterLength)
        for p in n.pitches:
            starts.append(round(on * spq))
            ends.append(round(off * spq))
            pitches.append(p.midi)
    return notes_to_roll(np.array(starts, np.int64), np.array(ends, np.int64), np.array(pitches, np.int64), config)


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
        data = json.loads(raw) if path.suffix.lower() == ".json" else _SafeUnpickler(io.BytesIO(raw), encoding="latin1").load()
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


def sequences_to_pianoroll(seqs: Sequence[Sequence[Iterable[int]]], low: int = 21, num_pitches: int = 88) -> list[np.ndarray]:
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


def sequences_to_rolls(seqs: Sequence[Sequence[Iterable[int]]], config: PianoRollConfig, steps_per_frame: int = 1) -> list[np.ndarray]:
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
    h.update(json.dumps({"format": _CACHE_FORMAT, "kind": kind, "config": config.to_dict(), "extra": extra}, sort_keys=True).encode())
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
        from .shards import ShardedCorpus, prepare_shards

        if kind == "shards":
            return ShardedCorpus(root)
        return prepare_shards(source, config, cache_dir=cache_dir, workers=workers, progress=progress)
    if kind == "polyphonic":
        split = source.rpartition(":")[2] if _is_split_spec(source) else "train"
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

    parse = _parse_music21 if kind == "music21" else _parse_midi
    tasks = [(str(f), str(f.relative_to(root)), config) for f in files]
    workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
    # Process start-up costs more than parsing a few small MIDI files.
    serial = workers <= 1 or (kind == "midi" and len(tasks) < 256)
    results: list[tuple[str, np.ndarray | None, str]] = []
    bar = tqdm(total=len(tasks), desc=f"preparing {Path(source).name}", unit="file", disable=not progress)
    if serial:
        for t in tasks:
            results.extend(parse(t))
            bar.update()
    else:
        with ProcessPoolExecutor(workers) as pool:
            for res in pool.map(parse, tasks, chunksize=max(1, len(tasks) // (workers * 16))):
                results.extend(res)
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
