"""Every output of one piece: MIDI, audio, piano-roll picture, chords, key, tempo.

Generation and composition commands call :func:`write_piece` once per piece and
print :meth:`PieceReport.summary`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import symusic

from moodsong.errors import MoodsongError
from moodsong.fileio import atomic_path

__all__ = ["PieceReport", "write_piece"]


@dataclass
class PieceReport:
    """What :func:`write_piece` wrote and what it read from the piece.

    Attributes
    ----------
    paths : dict
        ``"midi"``, ``"audio"`` and ``"png"`` to the written paths (audio/png
        are None when not asked for).
    chords : list of str
        One chord symbol per bar, e.g. ``["C", "Am", "F", "G7"]``.
    key : str
        Estimated key, e.g. ``"C major"``.
    tempo_qpm : float
        Initial tempo in quarter notes per minute.
    duration_s : float
        Length of the music in seconds (last note-off; the audio adds a tail).
    renderer : str
        Renderer that made the audio ("" when none).
    """

    paths: dict[str, Path | None] = field(default_factory=dict)
    chords: list[str] = field(default_factory=list)
    key: str = ""
    tempo_qpm: float = 120.0
    duration_s: float = 0.0
    renderer: str = ""

    @property
    def midi(self) -> Path | None:
        return self.paths.get("midi")

    @property
    def audio(self) -> Path | None:
        return self.paths.get("audio")

    @property
    def png(self) -> Path | None:
        return self.paths.get("png")

    def summary(self, per_line: int = 8) -> str:
        """Multi-line text for the terminal: files, chords, key, tempo, duration."""
        lines = []
        for kind in ("midi", "audio", "png", "musicxml"):
            if self.paths.get(kind) is not None:
                lines.append(f"{kind:>8}: {self.paths[kind]}")
        bars = [" | ".join(self.chords[i : i + per_line]) for i in range(0, len(self.chords), per_line)]
        lines.append(f"{'chords':>8}: " + (("\n" + " " * 10).join(bars) if bars else "-"))
        lines.append(f"{'key':>8}: {self.key or '-'}")
        lines.append(f"{'tempo':>8}: {self.tempo_qpm:g} qpm")
        minutes, seconds = divmod(self.duration_s, 60)
        lines.append(f"{'duration':>8}: {int(minutes)}:{seconds:04.1f} ({self.duration_s:.1f} s)")
        return "\n".join(lines)


def write_piece(
    score: symusic.Score,
    out_dir: str | os.PathLike,
    stem: str = "piece",
    *,
    audio: str | None = "wav",
    picture: bool = True,
    renderer: str = "auto",
    soundfont: str | os.PathLike | None = None,
    title: str | None = None,
    chords: list[str] | None = None,
    key: str | None = None,
) -> PieceReport:
    """Write ``<stem>.mid``, ``<stem>.<audio>`` and ``<stem>.png`` into ``out_dir`` and analyse the piece.

    Parameters
    ----------
    score : symusic.Score
        The piece.
    out_dir : path
        Folder for the files (created if missing).
    stem : str
        File name without suffix.
    audio : {"wav", "flac", "ogg", "mp3"} or None
        Audio format, or None for no audio.
    picture : bool
        Also draw the piano-roll PNG.
    renderer, soundfont
        See :func:`moodsong.render.audio.render`.
    title : str, optional
        Picture title (default: stem, key and tempo).
    chords, key : optional
        What the piece is known to be (a song's plan, one entry per bar, and its key); when
        given, they are reported instead of being recognised from the notes.

    Returns
    -------
    PieceReport
    """
    from moodsong.render.audio import render, write_audio
    from moodsong.representation.pianoroll import read_score

    score = read_score(score)
    if sum(len(t.notes) for t in score.tracks) == 0:
        raise MoodsongError("the piece has no notes; nothing to write")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise MoodsongError(f"{out_dir}: exists and is not a folder")
    if not stem or "/" in stem or os.sep in stem:
        raise MoodsongError(f"bad file stem {stem!r}")
    if audio is not None and f".{audio.lower().lstrip('.')}" not in (".wav", ".flac", ".ogg", ".mp3"):
        raise MoodsongError(f"unknown audio format {audio!r}; use wav, flac, ogg or mp3")

    paths: dict[str, Path | None] = {"midi": out_dir / f"{stem}.mid", "audio": None, "png": None}
    with atomic_path(paths["midi"]) as tmp:
        score.dump_midi(str(tmp))

    if chords is None or key is None:
        from moodsong.representation.chords import analyze

        progression = analyze(score, per="bar")
        chords = progression.names if chords is None else chords
        key = progression.key if key is None else key
    qpm = float(score.tempos[0].qpm) if len(score.tempos) else 120.0
    report = PieceReport(
        paths=paths,
        chords=list(chords),
        key=key,
        tempo_qpm=round(qpm, 2),
        duration_s=float(score.to("second").end()),
    )
    if audio is not None:
        rendered = render(score, renderer=renderer, soundfont=soundfont)
        paths["audio"] = write_audio(rendered, out_dir / f"{stem}.{audio.lower().lstrip('.')}")
        report.renderer = rendered.renderer
    if picture:
        from moodsong.render.pictures import save_pianoroll

        if title is None:
            title = f"{stem}: {key or 'no key'}, {qpm:g} qpm"
        paths["png"] = save_pianoroll(score, out_dir / f"{stem}.png", title=title)
    return report
