"""``moodsong prepare`` and ``moodsong info``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from moodsong.cli.group import main
from moodsong.errors import MoodsongError

if TYPE_CHECKING:
    from moodsong.representation.pianoroll import PianoRollConfig


def representation_options(f):
    """Options shared by every command that builds note-state matrices."""
    f = click.option("--steps-per-quarter", default=4, show_default=True,
                     help="Time steps per quarter note (4 = sixteenths).")(f)
    f = click.option("--num-pitches", default=78, show_default=True, help="Number of pitch columns.")(f)
    f = click.option("--lowest-pitch", default=24, show_default=True, help="MIDI number of the lowest pitch column.")(f)
    f = click.option("--drums/--no-drums", default=False, show_default=True, help="Keep General MIDI drum tracks.")(f)
    return f


def config_from_options(lowest_pitch: int, num_pitches: int, steps_per_quarter: int, drums: bool) -> PianoRollConfig:
    from moodsong.representation.pianoroll import PianoRollConfig

    try:
        return PianoRollConfig(lowest_pitch, num_pitches, steps_per_quarter, drums)
    except ValueError as exc:
        raise MoodsongError(str(exc)) from None


@main.command()
@click.argument("source")
@representation_options
@click.option("--cache-dir", type=click.Path(file_okay=False),
              help="Cache folder (default $MOODSONG_CACHE or ~/.cache/moodsong).")
@click.option("--no-cache", is_flag=True, help="Parse again even if a cached result exists.")
@click.option("--workers", type=int, default=None, help="Parallel worker processes (default: number of cores).")
@click.option("--sharded", is_flag=True, help="Write memory-mapped shards (for large corpora; resumes if interrupted).")
@click.option("--out", "shard_out", type=click.Path(file_okay=False), default=None,
              help="With --sharded: folder for the shards (default: under the cache folder).")
@click.option("--shard-pieces", default=2000, show_default=True, help="With --sharded: pieces per shard at most.")
@click.option("--shard-mb", default=256.0, show_default=True, help="With --sharded: megabytes per shard at most.")
def prepare(source, lowest_pitch, num_pitches, steps_per_quarter, drums, cache_dir, no_cache, workers, sharded,
            shard_out, shard_pieces, shard_mb):
    """Parse a corpus into note-state matrices and cache the result.

    SOURCE is a folder of MIDI files (searched recursively), one MIDI file, a
    polyphonic-benchmark pickle/JSON (optionally FILE:valid or FILE:test), or a
    built-in corpus: bach, nottingham, ryans, oneills, essen.

    \b
    Examples:
      moodsong prepare bach
      moodsong prepare ~/midi/pop --steps-per-quarter 2
      moodsong prepare data/jsb_chorales.pkl:test
      moodsong prepare ~/lakh_midi --sharded --out ~/lakh-shards   # then: moodsong train ~/lakh-shards ...

    Sources of 20000 files or more are always sharded (see docs/scale.md).
    """
    config = config_from_options(lowest_pitch, num_pitches, steps_per_quarter, drums)
    if sharded or shard_out:
        from moodsong.corpora.shards import prepare_shards

        corpus = prepare_shards(source, config, shard_out, cache_dir=cache_dir, shard_pieces=shard_pieces,
                                shard_mb=shard_mb, workers=workers)
        click.echo(corpus.summary())
        return
    from moodsong.corpora.corpus import load_corpus

    corpus = load_corpus(source, config, cache_dir=cache_dir, use_cache=not no_cache, workers=workers)
    click.echo(corpus.summary())


@main.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def info(path, as_json):
    """Describe a checkpoint (.json/.safetensors) or a MIDI file.

    For a MIDI file it also says the key and the emotion moodsong hears in the music (valence and
    arousal in [-1, 1], the quadrant), and whether the piece reads as a played performance or as a
    score or lone melody (the estimator weighs two valence experts by that).

    \b
    Examples:
      moodsong info runs/bach/model.json
      moodsong info songs/piece-0.mid --json
      moodsong info my_song.mid                # key, emotion heard in the music
    """
    p = Path(path)
    if p.suffix.lower() in (".json", ".safetensors"):
        from moodsong.models.checkpoint import describe_checkpoint

        d = describe_checkpoint(p)
    else:
        d = describe_midi(p)
    if as_json:
        click.echo(json.dumps(d, indent=2))
    else:
        for k, v in d.items():
            click.echo(f"{k:>18}: {v}")


def describe_midi(path: Path) -> dict:
    from moodsong.emotion import QUADRANTS
    from moodsong.emotion.music import MusicEmotionEstimator
    from moodsong.representation.chords import estimate_key
    from moodsong.representation.pianoroll import PianoRollConfig, read_score, roll_to_notes, score_to_roll

    score = read_score(path)
    config = PianoRollConfig()
    roll = score_to_roll(score, config)
    col, start, end = roll_to_notes(roll)
    qpm = score.tempos[0].qpm if len(score.tempos) else 120.0
    out = {
        "file": str(path),
        "tracks": len(score.tracks),
        "notes": int(sum(len(t.notes) for t in score.tracks)),
        "programs": sorted({int(t.program) for t in score.tracks if not t.is_drum}),
        "drum tracks": sum(int(t.is_drum) for t in score.tracks),
        "ticks per quarter": score.ticks_per_quarter,
        "tempo (qpm)": round(float(qpm), 2),
        "time signatures": sorted({f"{ts.numerator}/{ts.denominator}" for ts in score.time_signatures}) or ["4/4"],
        "duration (s)": round(float(score.to("second").end()), 3),
        "steps (16ths)": int(roll.shape[0]),
        "notes in roll": int(col.size),
        "pitch range": (f"{int(col.min()) + config.lowest_pitch}..{int(col.max()) + config.lowest_pitch}"
                        if col.size else "-"),
    }
    if col.size >= 4:  # the estimator needs a few notes to hear anything
        est = MusicEmotionEstimator.load_default()
        emo = est.predict_score(score)
        out |= {
            "key": estimate_key(score),
            "valence": round(emo.valence, 3),
            "arousal": round(emo.arousal, 3),
            "quadrant": f"Q{emo.quadrant} ({QUADRANTS[emo.quadrant][0]})",
        }
        if est.w_gate_ is not None:
            out["reads as"] = "a played performance" if emo.performance >= 0.5 else "a score or a lone melody"
    return out
