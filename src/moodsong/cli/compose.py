"""``moodsong compose``: a feeling in, a fitting piece out (MIDI + audio + picture)."""

from __future__ import annotations

import json

import click

from . import main


@main.command()
@click.argument("prompt", required=False)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="moodsong-out", show_default=True,
              help="Folder for the MIDI, audio and picture.")
@click.option("--voice", type=click.Path(dir_okay=False), help="Read the request from a recording (WAV/FLAC/OGG) instead of PROMPT.")
@click.option("--valence", type=float, help="Target valence in [-1, 1] (unpleasant .. pleasant), instead of a prompt.")
@click.option("--arousal", type=float, help="Target arousal in [-1, 1] (calm .. excited), instead of a prompt.")
@click.option("--quadrant", type=click.IntRange(1, 4), help="Target Russell quadrant: 1 happy, 2 tense, 3 sad, 4 calm.")
@click.option("--bars", type=click.IntRange(1, 256), default=8, show_default=True, help="Length in 4/4 bars.")
@click.option("--candidates", type=click.IntRange(1, 64), default=6, show_default=True,
              help="Pieces generated; the music-emotion estimator keeps the closest to the target.")
@click.option("--keep", type=click.IntRange(1, 64), default=1, show_default=True, help="How many of the best candidates to write.")
@click.option("--seed", type=int, default=None, help="Random seed (same seed and request, same piece).")
@click.option("--temperature", type=click.FloatRange(0.1, 4.0), default=1.0, show_default=True,
              help="Sampling temperature: above 1 wilder, below 1 safer.")
@click.option("--stem", default="moodsong", show_default=True, help="File name stem: STEM.mid, STEM.wav, STEM.png.")
@click.option("--audio", "audio_format", type=click.Choice(["wav", "flac", "ogg", "mp3", "none"]), default="wav",
              show_default=True, help="Audio format, or none.")
@click.option("--no-picture", is_flag=True, help="Do not draw the piano-roll picture.")
@click.option("--strength", type=float, default=None,
              help="How far the emotion condition is pushed: 1 = as learned, more = exaggerated (default: the model's, 3).")
@click.option("--model", type=click.Path(dir_okay=False), help="An emotion-conditional model (checkpoint path; a WaveNet-NADE with a quadrant condition or a conditional RBM) instead of the shipped one.")
@click.option("--backend", type=click.Choice(["auto", "pocketsphinx", "whisper"]), default="auto", show_default=True,
              help="Speech recognizer for --voice.")
@click.option("--whisper-model", type=click.Path(file_okay=False), help="Local faster-whisper model folder for --voice (never downloaded).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the text report.")
def compose(prompt, out_dir, voice, valence, arousal, quadrant, bars, candidates, keep, seed, temperature, stem,
            audio_format, no_picture, strength, model, backend, whisper_model, as_json):
    """Compose a piece that fits a feeling, and say what was understood and made.

    The feeling comes from PROMPT (English or Chinese), a spoken --voice file,
    explicit --valence/--arousal, or a --quadrant. An emotion-conditional
    WaveNet-NADE (whole pieces; fine-tuned on EMOPIA's labelled piano clips)
    samples --candidates pieces; tempo, register, mode, density, articulation, loudness and
    instrument are steered by the emotion; a music-emotion estimator scores each
    candidate and the closest to the target is written as MIDI, audio and a
    piano-roll picture.

    \b
    Examples:
      moodsong compose "I want a song that expresses hope and wonder" --out songs/
      moodsong compose "一首悲伤缓慢的歌" --out songs/ --bars 16
      moodsong compose --voice request.wav --out songs/
      moodsong compose --valence -0.6 --arousal 0.7 --out songs/ --seed 3
      moodsong compose --quadrant 4 --candidates 10 --keep 2 --out songs/ --json
    """
    from ..compose import ComposeRequest
    from ..compose import compose as run_compose

    req = ComposeRequest(
        prompt=prompt, voice=voice, valence=valence, arousal=arousal, quadrant=quadrant, bars=bars,
        candidates=candidates, keep=keep, seed=seed, out_dir=out_dir, stem=stem,
        audio=None if audio_format == "none" else audio_format, picture=not no_picture, model=model,
        voice_backend=backend, whisper_model=whisper_model, temperature=temperature, strength=strength,
    )
    result = run_compose(req)
    if as_json:
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        click.echo(result.summary())
