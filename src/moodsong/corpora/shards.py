"""Sharded corpus caches: preparation that scales to hundreds of thousands of files.

:func:`moodsong.corpora.corpus.load_corpus` keeps one cache entry per corpus and holds
every parsed piece in memory before writing it, which is right for a few
thousand files. For collections like the Lakh MIDI set (~176k files) this module
streams instead:

- files are parsed in a process pool, a bounded number of chunks in flight, so
  memory stays flat however many files there are;
- pieces are written as fixed-size *shards* (``shard_pieces`` pieces or
  ``shard_mb`` megabytes, whichever comes first), each a memory-mappable
  ``shard-NNNNNN.npy`` (``uint8``, ``(steps, width)``, the pieces' rolls one after
  another) plus ``shard-NNNNNN.json`` naming the *files* it covers, the pieces'
  names and lengths, and the files that could not be read;
- a shard is complete once its JSON exists (written after the array), so an
  interrupted run resumes with exactly the files no complete shard covers: none
  is parsed twice or dropped;
- ``index.json`` is written last and marks a finished corpus.

:class:`ShardedCorpus` reads the index and opens shards lazily with ``mmap``;
it offers the same ``names`` / ``rolls`` / ``windows()`` surface as
:class:`~moodsong.corpora.corpus.Corpus`, and :class:`WindowTable` gathers random
training windows straight from the mapped shards, so training never loads
the whole corpus.

Layout::

    <cache>/shards/<key>/
        prepare.json            what is being prepared (key, source, settings); written first
        shard-000000.npy        uint8 (steps, width)
        shard-000000.json       {"files": [...], "names": [...], "lengths": [...], "skipped": [...]}
        ...
        index.json              written last: {"shards": [...], "num_pieces", "total_steps", ...}

The key covers the representation settings and each file's relative path,
size and modification time (not its content: hashing 176k files would cost a
second full read of the corpus).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from moodsong import __version__
from moodsong.corpora.sources import default_cache_dir, default_workers, list_inputs, parse_files, skipped_lines
from moodsong.errors import MoodsongError
from moodsong.fileio import atomic_path, write_text_atomic
from moodsong.representation.pianoroll import PianoRollConfig, roll_windows, song_windows

_SHARD_FORMAT = 1
#: Sources with at least this many files are prepared as shards by ``load_corpus``.
SHARD_THRESHOLD = 20_000


def shard_key(kind: str, root: Path, files: Sequence[Path], config: PianoRollConfig) -> str:
    """Key of a corpus: settings plus each file's relative path, size and mtime (ns)."""
    h = hashlib.sha256()
    h.update(json.dumps({"format": _SHARD_FORMAT, "kind": kind, "config": config.to_dict()}, sort_keys=True).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def default_shard_dir(
    source: str, config: PianoRollConfig = PianoRollConfig(), cache_dir: str | os.PathLike | None = None
) -> Path:
    root, files, kind = list_inputs(source)
    return Path(cache_dir or default_cache_dir()) / "shards" / shard_key(kind, root, files, config)


def _complete_shards(folder: Path) -> list[tuple[int, dict]]:
    """``(id, manifest)`` of every complete shard (array and manifest both readable)."""
    out = []
    for m in sorted(folder.glob("shard-*.json")):
        try:
            sid = int(m.stem.split("-")[1])
            doc = json.loads(m.read_text())
            if (folder / f"{m.stem}.npy").is_file():
                out.append((sid, doc))
        except (ValueError, OSError, IndexError):
            continue
    return out


def prepare_shards(
    source: str | os.PathLike,
    config: PianoRollConfig = PianoRollConfig(),
    out: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    shard_pieces: int = 2000,
    shard_mb: float = 256.0,
    workers: int | None = None,
    files_per_task: int = 8,
    progress: bool = True,
    on_shard: Callable[[int, dict], None] | None = None,
) -> ShardedCorpus:
    """Parse ``source`` (a MIDI folder/file or a built-in music21 corpus) into shards, resuming if interrupted.

    Parameters
    ----------
    out : path, optional
        Folder for the shards (default ``<cache>/shards/<key>``). A folder that
        holds shards of a different corpus or settings is refused.
    shard_pieces, shard_mb : int, float
        A shard is closed at a file boundary once it holds this many pieces or megabytes.
    workers : int, optional
        Parser processes (default: cores, at most 8; 1 parses in this process).
    files_per_task : int
        Files handed to a worker at once (amortises inter-process overhead).
    on_shard : callable, optional
        Called as ``on_shard(shard_id, manifest)`` after each shard is durably written.

    Returns
    -------
    ShardedCorpus

    Raises
    ------
    MoodsongError
        If the source is missing or a benchmark pickle (those are small: use ``load_corpus``),
        if ``out`` belongs to another corpus, or if no file could be read.
    """
    source = str(source)
    root, files, kind = list_inputs(source)
    if kind == "polyphonic":
        raise MoodsongError(f"{source}: benchmark files are prepared in memory; "
                            "sharding is for MIDI folders and built-in corpora")
    if shard_pieces < 1 or shard_mb <= 0:
        raise MoodsongError("shard size must be positive")
    key = shard_key(kind, root, files, config)
    folder = Path(out) if out is not None else Path(cache_dir or default_cache_dir()) / "shards" / key
    plan = {"format": _SHARD_FORMAT, "key": key, "source": source, "kind": kind, "config": config.to_dict(),
            "num_files": len(files), "moodsong": __version__}
    if (folder / "prepare.json").is_file():
        try:
            old = json.loads((folder / "prepare.json").read_text())
        except ValueError:
            old = {}
        if old.get("key") != key:
            raise MoodsongError(f"{folder} holds shards of another corpus or other settings; choose another folder")
        if (folder / "index.json").is_file():
            return ShardedCorpus(folder)
    else:
        if folder.exists() and any(folder.iterdir()):
            raise MoodsongError(f"{folder} is not empty and holds no moodsong shards; choose another folder")
        write_text_atomic(folder / "prepare.json", json.dumps(plan))

    done = _complete_shards(folder)
    covered = {f for _, d in done for f in d["files"]}
    next_id = max((sid for sid, _ in done), default=-1) + 1
    todo = [(str(f), str(f.relative_to(root))) for f in files]
    todo = [t for t in todo if t[1] not in covered]

    bar = tqdm(total=len(files), initial=len(files) - len(todo), desc=f"preparing {Path(source).name} (shards)",
               unit="file", disable=not progress)
    buf: dict = {"files": [], "names": [], "lengths": [], "skipped": []}
    rolls: list[np.ndarray] = []
    nbytes = 0
    limit = shard_mb * 2**20

    def flush() -> None:
        nonlocal next_id, rolls, buf, nbytes
        if not buf["files"]:
            return
        stem = f"shard-{next_id:06d}"
        with atomic_path(folder / f"{stem}.npy") as tmp:
            with open(tmp, "wb") as fh:
                # the .npy header, then piece after piece: no concatenated copy of the shard in memory
                shape = (sum(r.shape[0] for r in rolls), config.width)
                np.lib.format.write_array_header_1_0(fh, {"descr": "|u1", "fortran_order": False, "shape": shape})
                for r in rolls:
                    fh.write(np.ascontiguousarray(r, np.uint8).data)
        # The manifest goes last: its presence is what marks the shard (and its files) done.
        write_text_atomic(folder / f"{stem}.json", json.dumps(buf))
        if on_shard is not None:
            on_shard(next_id, buf)
        next_id += 1
        buf = {"files": [], "names": [], "lengths": [], "skipped": []}
        rolls, nbytes = [], 0

    def add(rel: str, results: list) -> None:
        nonlocal nbytes
        buf["files"].append(rel)
        for name, roll, why in results:
            if roll is None:
                buf["skipped"].append([name, why])
            elif roll.shape[0] == 0:
                buf["skipped"].append([name, "no notes in the pitch range"])
            else:
                buf["names"].append(name)
                buf["lengths"].append(int(roll.shape[0]))
                rolls.append(roll)
                nbytes += roll.nbytes
        bar.update()
        if len(buf["names"]) >= shard_pieces or nbytes >= limit:
            flush()

    # Results come in file order whatever the workers' timing, so shard contents are reproducible.
    workers = workers if workers is not None else default_workers()
    for rel, res in parse_files(kind, todo, config, workers=workers, files_per_task=files_per_task):
        add(rel, res)
    flush()
    bar.close()

    shards = []
    for sid, doc in _complete_shards(folder):
        shards.append({"id": sid, "pieces": len(doc["names"]), "steps": int(sum(doc["lengths"])),
                       "files": len(doc["files"])})
    index = {**plan, "shards": shards, "num_pieces": sum(s["pieces"] for s in shards),
             "total_steps": sum(s["steps"] for s in shards)}
    if index["num_pieces"] == 0:
        raise MoodsongError(f"{source}: none of {len(files)} input(s) could be read")
    write_text_atomic(folder / "index.json", json.dumps(index))
    return ShardedCorpus(folder)


class _LazyRolls(Sequence):
    """``corpus.rolls[i]``: a read-only memory-mapped view of piece ``i``, opened on first use."""

    def __init__(self, corpus: ShardedCorpus):
        self._c = corpus

    def __len__(self) -> int:
        return len(self._c.names)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        c = self._c
        start = int(c.piece_row[i])
        return c.shard_array(int(c.piece_shard[i]))[start: start + int(c.lengths[i])]

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[i] for i in range(len(self)))


class ShardedCorpus:
    """A prepared, sharded corpus; pieces are read lazily from memory-mapped shards.

    Duck-compatible with :class:`moodsong.corpora.corpus.Corpus` (``names``, ``rolls``,
    ``config``, ``skipped``, ``source``, ``windows``, ``song_windows``, ``summary``).

    Attributes
    ----------
    lengths : numpy.ndarray
        Steps per piece (``int64``).
    piece_shard, piece_row : numpy.ndarray
        Shard id of each piece and the row where it starts in that shard.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        try:
            index = json.loads((self.folder / "index.json").read_text())
        except (OSError, ValueError):
            raise MoodsongError(
                f"{self.folder}: not a finished sharded corpus (index.json missing or corrupt)") from None
        self.index = index
        self.config = PianoRollConfig.from_dict(index["config"])
        self.source = index.get("source", "")
        self.names: list[str] = []
        self.skipped: list[tuple[str, str]] = []
        lengths, shard_of, row = [], [], []
        for s in index["shards"]:
            doc = json.loads((self.folder / f"shard-{s['id']:06d}.json").read_text())
            ln = np.asarray(doc["lengths"], np.int64)
            self.names += doc["names"]
            self.skipped += [tuple(x) for x in doc["skipped"]]
            lengths.append(ln)
            shard_of.append(np.full(len(ln), s["id"], np.int64))
            row.append(np.concatenate([[0], np.cumsum(ln)[:-1]]).astype(np.int64) if len(ln) else ln)
        self.lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
        self.piece_shard = np.concatenate(shard_of) if shard_of else np.zeros(0, np.int64)
        self.piece_row = np.concatenate(row) if row else np.zeros(0, np.int64)
        self._arrays: dict[int, np.ndarray] = {}
        self.rolls = _LazyRolls(self)

    def shard_array(self, sid: int) -> np.ndarray:
        a = self._arrays.get(sid)
        if a is None:
            a = self._arrays[sid] = np.load(self.folder / f"shard-{sid:06d}.npy", mmap_mode="r")
        return a

    def __len__(self) -> int:
        return len(self.names)

    @property
    def num_shards(self) -> int:
        return len(self.index["shards"])

    @property
    def total_steps(self) -> int:
        return int(self.lengths.sum())

    def windows(self, num_timesteps: int, *, skip_first: bool = False) -> np.ndarray:
        """All windows in memory, as :meth:`Corpus.windows` (for corpora that fit; train with :class:`WindowTable`)."""
        table = WindowTable(self, range(len(self)), num_timesteps, skip_first=skip_first)
        return table.gather(np.arange(len(table)))

    def song_windows(self, num_timesteps: int) -> list[np.ndarray]:
        """Windows grouped by piece, as :meth:`Corpus.song_windows` (reads every piece)."""
        return song_windows(self.rolls, num_timesteps)

    def summary(self) -> str:
        lines = [f"{len(self)} pieces in {self.num_shards} shard(s) at {self.folder}, {self.total_steps} steps "
                 f"({self.config.steps_per_quarter} per quarter, "
                 f"pitches {self.config.lowest_pitch}..{self.config.highest_pitch})"]
        return "\n".join(lines + skipped_lines(self.skipped, limit=20))


class WindowTable:
    """The non-overlapping ``num_timesteps``-step windows of some pieces, addressed ``0 .. len-1``.

    Windows are gathered on demand with vectorised indexing, one fancy-index per
    shard touched, so a random batch reads only its own rows from the
    memory-mapped shards. For an in-memory :class:`~moodsong.corpora.corpus.Corpus` the
    pieces' windows are concatenated once.

    Parameters
    ----------
    corpus : Corpus or ShardedCorpus
    pieces : sequence of int
        Which pieces (e.g. the training split).
    num_timesteps : int
        Steps per window; a window is flattened to ``num_timesteps * width`` values.

    Attributes
    ----------
    counts : numpy.ndarray
        Windows of each piece that has any, in order: piece ``j``'s windows are
        consecutive, starting at ``counts[:j].sum()``.
    """

    def __init__(self, corpus, pieces: Sequence[int], num_timesteps: int, *, skip_first: bool = False):
        self.T = int(num_timesteps)
        self.width = corpus.config.width
        pieces = np.asarray(list(pieces), np.int64)
        self.lazy = isinstance(corpus, ShardedCorpus)
        if self.lazy:
            self._corpus = corpus
            n = corpus.lengths[pieces] // self.T if len(pieces) else np.zeros(0, np.int64)
            first = np.ones_like(n) if skip_first else np.zeros_like(n)
            n_used = np.maximum(n - first, 0)
            keep = n_used > 0
            pieces, n_used, first = pieces[keep], n_used[keep], first[keep]
            self.piece_of = np.repeat(pieces, n_used)  # piece of each window
            # window w's first row in its shard = piece start + (first + rank within piece) * T
            rank = np.arange(int(n_used.sum()), dtype=np.int64) - np.repeat(np.cumsum(n_used) - n_used, n_used)
            self.shard_of = corpus.piece_shard[self.piece_of]
            self.row_of = corpus.piece_row[self.piece_of] + (np.repeat(first, n_used) + rank) * self.T
            self._n = int(n_used.sum())
            self.counts = n_used
        else:
            rolls = (corpus.rolls[int(i)] for i in pieces)
            out = [roll_windows(r, self.T, skip_first=skip_first) for r in rolls if r.shape[0] >= self.T]
            self._data = np.concatenate(out) if out else np.zeros((0, self.T * self.width), np.uint8)
            self._n = self._data.shape[0]
            self.counts = np.array([w.shape[0] for w in out], np.int64)

    def __len__(self) -> int:
        return self._n

    def gather(self, idx) -> np.ndarray:
        """Windows ``idx`` (array of ints) as ``uint8`` ``(len(idx), num_timesteps * width)``, in that order."""
        idx = np.asarray(idx, np.int64)
        if not self.lazy:
            return self._data[idx]
        out = np.empty((len(idx), self.T * self.width), np.uint8)
        shards = self.shard_of[idx]
        rows = self.row_of[idx]
        steps = np.arange(self.T)
        for sid in np.unique(shards):
            sel = np.flatnonzero(shards == sid)
            arr = self._corpus.shard_array(int(sid))
            out[sel] = arr[rows[sel, None] + steps].reshape(len(sel), -1)
        return out

    def in_memory(self) -> np.ndarray | None:
        """The whole table as one array when it is held in memory anyway, else ``None``."""
        return None if self.lazy else self._data

    def mean(self, chunk: int = 65536) -> np.ndarray:
        """Mean of every window (``float64``, length ``num_timesteps * width``), streamed in chunks."""
        total = np.zeros(self.T * self.width, np.float64)
        for s in range(0, len(self), chunk):
            total += self.gather(np.arange(s, min(s + chunk, len(self)))).sum(0, dtype=np.float64)
        return total / max(len(self), 1)
