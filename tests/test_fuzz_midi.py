"""Fuzzing the MIDI reader: mutated, truncated and random files never crash or hang the process.

Each input either reads (``midi_to_roll`` returns a ``uint8`` matrix of the
configured width) or raises :class:`moodsong.errors.BadMidiError`. Inputs run
in child processes, a chunk at a time, so a hard crash inside the C++ parser
(a segfault) or a hang is caught, narrowed down to the input that caused it,
and that input's bytes are saved for a bug report.
"""

from __future__ import annotations

import multiprocessing as mp
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from moodsong.corpora.corpus import load_corpus
from moodsong.errors import BadMidiError
from moodsong.representation.pianoroll import PianoRollConfig, midi_to_roll, roll_to_score

CONFIG = PianoRollConfig()
CHUNK = 400  # inputs per child process
CHUNK_TIMEOUT_S = 120.0  # a chunk parses in well under a second; this only catches hangs


# --------------------------------------------------------------------------- seeds


def _seed_files() -> list[bytes]:
    """A few valid, varied MIDI files: several tracks, drums, tempo and meter changes, long notes."""
    rng = np.random.default_rng(0)
    out = []
    for i, (qpm, meter) in enumerate([(120, (4, 4)), (73, (3, 4)), (180, (7, 8)), (96, (6, 8))]):
        steps = 48 + 16 * i
        roll = np.zeros((steps, CONFIG.width), np.uint8)
        for t in range(0, steps, 2 + i):
            for p in rng.choice(np.arange(10, 70), 3, replace=False):
                n = int(rng.integers(1, 9))
                roll[t : t + n, p] = 1
                roll[t, CONFIG.num_pitches + p] = 1
        score = roll_to_score(roll, CONFIG, qpm=qpm, program=i * 10, time_signature=meter)
        import symusic

        if i % 2:  # a second track, a drum track and a tempo change
            extra = roll_to_score(roll[::-1].copy(), CONFIG, program=40).tracks[0]
            score.tracks.append(extra)
            drums = symusic.Track("drums", 0, True)
            drums.notes.append(symusic.Note(0, 120, 36, 100))
            score.tracks.append(drums)
            score.tempos.append(symusic.Tempo(960, 140.0))
        out.append(bytes(score.dumps_midi()))
    return out


def _chunk_offsets(data: bytes) -> list[int]:
    """Offsets of the 4-byte length field of every chunk (header and tracks) that can be walked."""
    offs, pos = [], 0
    while pos + 8 <= len(data):
        offs.append(pos + 4)
        (length,) = struct.unpack(">I", data[pos + 4 : pos + 8])
        pos += 8 + length
    return offs


def _mutants(seeds: list[bytes], n: int, seed: int) -> list[bytes]:
    """``n`` corrupted MIDI files, cycling through the kinds of damage real files show."""
    rng = np.random.default_rng(seed)
    out = []
    for j in range(n):
        base = bytearray(seeds[j % len(seeds)])
        kind = j % 7
        if kind == 0:  # flip a few random bits
            for _ in range(int(rng.integers(1, 8))):
                k = int(rng.integers(len(base)))
                base[k] ^= 1 << int(rng.integers(8))
        elif kind == 1:  # overwrite random bytes
            for _ in range(int(rng.integers(1, 16))):
                base[int(rng.integers(len(base)))] = int(rng.integers(256))
        elif kind == 2:  # truncate anywhere, including inside the header
            base = base[: int(rng.integers(0, len(base)))]
        elif kind == 3:  # corrupt a chunk length: zero, huge, off by a little, or random
            off = int(rng.choice(_chunk_offsets(bytes(base))))
            (length,) = struct.unpack(">I", base[off : off + 4])
            new = int(rng.choice([0, 1, 0xFFFFFFFF, 0x7FFFFFFF, max(0, length - int(rng.integers(1, 9))),
                                  length + int(rng.integers(1, 9)), int(rng.integers(0, 2**32))]))
            base[off : off + 4] = struct.pack(">I", new)
        elif kind == 4:  # random bytes behind a plausible header
            hdr = b"MThd\x00\x00\x00\x06" + struct.pack(">HHH", int(rng.integers(0, 3)),
                                                         int(rng.choice([0, 1, 2, 4, 0xFFFF])),
                                                         int(rng.choice([0, 1, 96, 480, 0x7FFF, 0xE728, 0xFFFF])))
            body = rng.integers(0, 256, int(rng.integers(0, 400)), dtype=np.uint8).tobytes()
            if rng.random() < 0.5:
                body = b"MTrk" + struct.pack(">I", len(body)) + body
            base = bytearray(hdr + body)
        elif kind == 5:  # insert or delete a run of bytes (shifts every later event)
            k = int(rng.integers(len(base)))
            if rng.random() < 0.5:
                del base[k : k + int(rng.integers(1, 12))]
            else:
                base[k:k] = rng.integers(0, 256, int(rng.integers(1, 12)), dtype=np.uint8).tobytes()
        else:  # damage the event stream only: random bytes inside a track body
            offs = _chunk_offsets(bytes(base))[1:]
            start = (int(rng.choice(offs)) + 4) if offs else 14
            for _ in range(int(rng.integers(1, 6))):
                k = int(rng.integers(min(start, len(base) - 1), len(base)))
                base[k] = int(rng.choice([0x80, 0x90, 0xF0, 0xF7, 0xFF, 0x2F, 0x51, 0x7F, int(rng.integers(256))]))
        out.append(bytes(base))
    return out


# --------------------------------------------------------------------------- isolation


def _check_one(data: bytes) -> str | None:
    """None if the input behaves (reads or raises BadMidiError); otherwise what went wrong."""
    try:
        roll = midi_to_roll(data, CONFIG)
    except BadMidiError as exc:
        return None if str(exc) else "BadMidiError without a message"
    except Exception as exc:  # anything else escaping is a bug
        return f"{type(exc).__name__}: {exc}"
    if not isinstance(roll, np.ndarray) or roll.dtype != np.uint8 or roll.ndim != 2 or roll.shape[1] != CONFIG.width:
        return f"bad matrix {type(roll).__name__} {getattr(roll, 'dtype', None)} {getattr(roll, 'shape', None)}"
    if roll.size and roll.max() > 1:
        return "matrix holds values other than 0/1"
    return None


def _child(inputs: list[bytes], conn) -> None:
    bad = []
    for i, data in enumerate(inputs):
        why = _check_one(data)
        if why:
            bad.append((i, why))
    conn.send(bad)
    conn.close()


def _run_isolated(inputs: list[bytes], timeout: float) -> tuple[str, object]:
    """Run inputs in a child process: ("ok", [(index, problem)]), ("crash", exitcode) or ("hang", None)."""
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(inputs, send))
    proc.start()
    send.close()
    got = recv.poll(timeout)  # true on data, and on end-of-file when the child died
    try:
        result = recv.recv() if got else None
    except EOFError:
        result = None
    proc.join(5 if got else 0)
    if proc.is_alive():
        proc.kill()
        proc.join()
        return "hang", None
    if result is None:
        return "crash", proc.exitcode
    return "ok", result


def fuzz(inputs: list[bytes], save_dir: Path) -> list[str]:
    """Check every input in child processes; return problems, saving each offending input's bytes."""
    problems = []

    def save(data: bytes, tag: str) -> Path:
        save_dir.mkdir(parents=True, exist_ok=True)
        path = save_dir / f"{tag}-{len(problems)}.mid"
        path.write_bytes(data)
        return path

    for lo in range(0, len(inputs), CHUNK):
        chunk = inputs[lo : lo + CHUNK]
        status, res = _run_isolated(chunk, CHUNK_TIMEOUT_S)
        if status == "ok":
            for i, why in res:
                problems.append(f"{why} (input saved to {save(chunk[i], 'error')})")
            continue
        # The chunk crashed or hung: find the culprits one input at a time.
        for data in chunk:
            s, r = _run_isolated([data], CHUNK_TIMEOUT_S / 4)
            if s != "ok":
                problems.append(f"{s} (exit code {r}) (input saved to {save(data, s)})")
            elif r:
                problems.append(f"{r[0][1]} (input saved to {save(data, 'error')})")
    return problems


# --------------------------------------------------------------------------- tests


def test_seed_files_are_valid():
    for data in _seed_files():
        roll = midi_to_roll(data, CONFIG)
        assert roll.shape[0] > 0 and roll.shape[1] == CONFIG.width and roll.any()
        assert len(_chunk_offsets(data)) >= 2


def test_mutants_are_really_damaged():
    seeds = _seed_files()
    muts = _mutants(seeds, 700, seed=1)
    assert sum(m not in seeds for m in muts) > 650
    rejected = 0
    for m in muts:
        try:
            midi_to_roll(m, CONFIG)
        except BadMidiError:
            rejected += 1
    assert rejected > 150  # many mutants must be unreadable, or the fuzz exercises nothing


def test_isolation_catches_a_hard_crash(tmp_path, monkeypatch):
    # The harness itself must notice a process that dies mid-parse and save the input.
    import os

    real = _check_one

    def dying(data: bytes):
        if data == b"boom":
            os._exit(139)
        return real(data)

    monkeypatch.setattr(sys.modules[__name__], "_check_one", dying)
    problems = fuzz([_seed_files()[0], b"boom", b"MThd"], tmp_path / "saved")
    assert len(problems) == 1 and problems[0].startswith("crash")
    saved = list((tmp_path / "saved").iterdir())
    assert len(saved) == 1 and saved[0].read_bytes() == b"boom"


def test_fuzz_never_crashes_or_hangs(tmp_path):
    inputs = _mutants(_seed_files(), 8000, seed=2)
    problems = fuzz(inputs, tmp_path / "saved")
    assert not problems, "\n".join(problems[:20])


@pytest.mark.slow
def test_fuzz_never_crashes_or_hangs_many(tmp_path):
    inputs = _mutants(_seed_files(), 40000, seed=3)
    problems = fuzz(inputs, tmp_path / "saved")
    assert not problems, "\n".join(problems[:20])


def test_corpus_loader_reports_every_bad_file(tmp_path):
    seeds = _seed_files()
    folder = tmp_path / "fuzzed"
    folder.mkdir()
    muts = _mutants(seeds, 300, seed=4)  # over 256 files, so the loader uses its process pool
    for i, data in enumerate(seeds + muts):
        (folder / f"f{i:03d}.mid").write_bytes(data)
    expect_bad = set()  # unreadable, or read but without a note in range (the loader skips those too)
    for i, data in enumerate(seeds + muts):
        try:
            if midi_to_roll(data, CONFIG).shape[0] == 0:
                expect_bad.add(f"f{i:03d}.mid")
        except BadMidiError:
            expect_bad.add(f"f{i:03d}.mid")
    for workers in (1, 2):
        c = load_corpus(folder, CONFIG, cache_dir=tmp_path / f"cache{workers}", workers=workers, progress=False)
        skipped = {name for name, _ in c.skipped}
        assert skipped == expect_bad
        assert all(reason for _, reason in c.skipped)
        assert set(c.names) | skipped == {f"f{i:03d}.mid" for i in range(len(seeds) + len(muts))}
        assert not set(c.names) & skipped
        assert all(r.dtype == np.uint8 and r.shape[1] == CONFIG.width for r in c.rolls)
