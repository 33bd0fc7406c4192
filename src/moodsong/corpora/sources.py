"""Sources of training music: which files a source names, and parsing them into note-state matrices.

The one parsing API of moodsong. :mod:`moodsong.corpora.corpus` (in-memory corpora and
their cache) and :mod:`moodsong.corpora.shards` (memory-mapped shards for big corpora)
both build on it, so neither imports the other's internals.

Sources
-------
- a folder of ``.mid``/``.midi`` files (searched recursively) or a single MIDI file;
- a built-in corpus shipped inside music21 (no download): ``bach`` (the Bach
  chorales), ``nottingham`` (the Nottingham folk-collection sample music21
  ships), ``ryans`` (Ryan's Mammoth Collection), ``oneills`` (O'Neill's 1850),
  ``essen`` (Essen folk songs);
- a polyphonic-benchmark pickle or JSON, optionally with ``:valid``/``:test``
  (read by :func:`moodsong.corpora.corpus.load_polyphonic`);
- a folder of prepared shards (:mod:`moodsong.corpora.shards`).

Parsing never stops on a bad file: each parse returns ``[(name, roll or None, why)]``,
and :func:`parse_files` runs them in a process pool, in order, with a bounded
number of tasks in flight so memory does not grow with the number of files.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from moodsong.errors import MoodsongError
from moodsong.representation.pianoroll import PianoRollConfig, midi_to_roll, notes_to_roll

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

#: What one parse returns: ``(name, matrix or None, why it could not be read)`` per piece in the file.
Parsed = list[tuple[str, "np.ndarray | None", str]]


def default_cache_dir() -> Path:
    """``$MOODSONG_CACHE``, else ``$XDG_CACHE_HOME/moodsong``, else ``~/.cache/moodsong``."""
    if os.environ.get("MOODSONG_CACHE"):
        return Path(os.environ["MOODSONG_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "moodsong"


def music21_corpus_root() -> Path:
    import music21.corpus

    return Path(music21.corpus.__file__).parent


def is_split_spec(name: str) -> bool:
    """True for ``file.pkl:valid``-style names (a benchmark file and one of its splits)."""
    head, _, tail = name.rpartition(":")
    return bool(head) and tail in SPLITS and Path(head).suffix.lower() in (".pkl", ".pickle", ".json")


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
    path = Path(name.rsplit(":", 1)[0] if is_split_spec(name) else name)
    if path.is_dir() and (path / "index.json").is_file() and (path / "prepare.json").is_file():
        return path, [path / "index.json"], "shards"  # a prepared sharded corpus (moodsong.corpora.shards)
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


# --------------------------------------------------------------------------- parsing


def parse_midi(path: str, name: str, config: PianoRollConfig) -> Parsed:
    """One MIDI file as ``[(name, matrix, "")]``, or ``[(name, None, why)]`` if it cannot be read."""
    try:
        return [(name, midi_to_roll(path, config), "")]
    except Exception as exc:  # one bad file must never stop the run
        return [(name, None, str(exc).removeprefix(f"{path}: "))]


def parse_music21(path: str, name: str, config: PianoRollConfig) -> Parsed:
    """One file music21 reads (MusicXML, kern, ABC); an ABC book gives one piece per tune, named ``name#i``."""
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


def skipped_lines(skipped: list[tuple[str, str]], limit: int | None = None) -> list[str]:
    """Report lines for inputs that could not be read (the first ``limit`` of them, or all)."""
    if not skipped:
        return []
    shown = skipped if limit is None else skipped[:limit]
    head = f"skipped {len(skipped)} unreadable input(s)" + (":" if len(shown) == len(skipped) else f" (first {limit}):")
    return [head] + [f"  {name}: {reason}" for name, reason in shown]


def parse_file(kind: str, path: str, name: str, config: PianoRollConfig) -> Parsed:
    """Parse one input of a source of ``kind`` (``midi`` or ``music21``, from :func:`list_inputs`)."""
    return (parse_music21 if kind == "music21" else parse_midi)(path, name, config)


def _parse_chunk(args: tuple[str, list[tuple[str, str]], PianoRollConfig]) -> list[tuple[str, Parsed]]:
    """Parse a few files in a worker; returns ``[(name, parsed), ...]``."""
    kind, items, config = args
    return [(name, parse_file(kind, path, name, config)) for path, name in items]


def default_workers() -> int:
    """Parser processes when none are asked for: the cores, at most 8."""
    return min(os.cpu_count() or 1, 8)


def parse_files(
    kind: str,
    items: Iterable[tuple[str, str]],
    config: PianoRollConfig,
    *,
    workers: int = 1,
    files_per_task: int = 8,
) -> Iterator[tuple[str, Parsed]]:
    """Parse ``(path, name)`` items, yielding ``(name, parsed)`` per file in the items' order.

    ``workers > 1`` parses in a process pool, ``files_per_task`` files per task (amortising
    the inter-process overhead), with at most ``4 * workers`` tasks in flight: memory does not
    grow with the number of files, and results come in submission order, so what is built from
    them does not depend on timing. ``workers <= 1`` parses in this process.
    """
    items = list(items)
    tasks = ((kind, items[i: i + files_per_task], config) for i in range(0, len(items), files_per_task))
    if workers <= 1:
        for t in tasks:
            yield from _parse_chunk(t)
        return
    with ProcessPoolExecutor(workers) as pool:
        inflight: collections.deque = collections.deque()
        for t in tasks:
            inflight.append(pool.submit(_parse_chunk, t))
            if len(inflight) >= workers * 4:
                yield from inflight.popleft().result()
        while inflight:
            yield from inflight.popleft().result()
