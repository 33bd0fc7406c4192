"""The lead sheet: the melody with chord symbols as MusicXML, written through music21.

MuseScore, Sibelius, Finale, Dorico and most notation programs open MusicXML. The sheet
holds one part (the melody, on a treble staff), the key signature, 4/4, the tempo, the
title, and a chord symbol wherever the plan changes chord. Rests fill the gaps; music21
splits notes at bar lines and ties them.
"""

from __future__ import annotations

import os
from pathlib import Path

from moodsong.corpora.pop909 import STEPS_PER_BAR
from moodsong.fileio import atomic_path

__all__ = ["write_leadsheet", "m21_figure"]

_M21_SUFFIX = {"": "", "m": "m", "7": "7", "maj7": "maj7", "m7": "m7", "o": "dim", "+": "+", "ø7": "ø7",
               "o7": "o7", "sus4": "sus", "sus2": "sus2"}


def m21_figure(name: str) -> str:
    """A moodsong chord name (``"Bbmaj7"``, ``"F#m"``, ``"Esus4"``) as a music21 figure (``"B-maj7"``...)."""
    root = name[:2] if len(name) > 1 and name[1] in "#b" else name[:1]
    suffix = name[len(root):]
    return root.replace("b", "-") + _M21_SUFFIX.get(suffix, suffix)


def write_leadsheet(song, path: str | os.PathLike, title: str | None = None) -> Path:
    """Write ``song`` (:class:`moodsong.song.model.Song`) as a MusicXML lead sheet at ``path``.

    Returns
    -------
    Path
        The written file (``.musicxml``).
    """
    from music21 import harmony, instrument, key, metadata, meter, note, stream, tempo

    part = stream.Part(id="melody")
    part.partName = "Melody"
    voice = instrument.Instrument()
    voice.partName = voice.instrumentName = "Melody"
    voice.partId, voice.instrumentId = "P1", "I1"  # else music21 draws random ids: same seed, same file
    part.insert(0, voice)
    part.insert(0, meter.TimeSignature("4/4"))
    tonic = song.key_name.split()[0].replace("b", "-")
    part.insert(0, key.Key(tonic, song.mode))
    part.insert(0, tempo.MetronomeMark(number=round(song.qpm)))
    t = 0
    for start, dur, pitch, _ in sorted(map(tuple, song.melody.tolist())):
        if start > t:
            part.insert(t / 4, note.Rest(quarterLength=(start - t) / 4))
        if start < t:  # overlapping primer notes: the later one is shortened by what sounds
            continue
        n = note.Note(int(pitch), quarterLength=dur / 4)
        part.insert(start / 4, n)
        t = start + dur
    end = song.bars * STEPS_PER_BAR
    if end > t:
        part.insert(t / 4, note.Rest(quarterLength=(end - t) / 4))
    for c, name in zip(song.plan, song.chord_names()):
        part.insert(c.start / 4, harmony.ChordSymbol(m21_figure(name)))
    sc = stream.Score()
    sc.insert(0, metadata.Metadata(title=title or f"moodsong in {song.key_name}", composer="moodsong"))
    sc.insert(0, part.makeMeasures())
    path = Path(path)
    with atomic_path(path) as tmp:
        sc.write("musicxml", fp=str(tmp), makeNotation=True)
    return path
