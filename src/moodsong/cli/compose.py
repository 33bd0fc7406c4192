"""``moodsong compose``: a feeling in, a fitting piece out (MIDI + audio + picture)."""

from __future__ import annotations

import json

import click

from moodsong.cli.group import main


@main.command()
@click.argument("prompt", required=False)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="moodsong-out", show_default=True,
              help="Folder for the MIDI, audio and picture.")
@click.option("--voice", type=click.Path(dir_okay=False),
              help="Read the request from a recording (WAV/FLAC/OGG) instead of PROMPT.")
@click.option("--valence", type=float, help="Target valence in [-1, 1] (unpleasant .. pleasant), instead of a prompt.")
@click.option("--arousal", type=float, help="Target arousal in [-1, 1] (calm .. excited), instead of a prompt.")
@click.option("--quadrant", type=click.IntRange(1, 4), help="Target Russell quadrant: 1 happy, 2 tense, 3 sad, 4 calm.")
@click.option("--bars", type=click.IntRange(1, 256), default=16, show_default=True, help="Length in 4/4 bars.")
@click.option("--form", help="Sections as letters, one phrase each: AABA, \"A A' B A\", ABAC "
                              "(default by length: A A' B A', ...).")
@click.option("--key", help="Key instead of the one the emotion chose, e.g. 'D minor', 'Bb major', 'F#m'.")
@click.option("--tempo", type=click.FloatRange(20, 300),
              help="Tempo in quarter notes per minute instead of the emotion's.")
@click.option("--instrument",
              help="General MIDI instruments MELODY[,ACCOMPANIMENT], e.g. 'flute' or 'violin,electric piano 1'.")
@click.option("--primer", type=click.Path(dir_okay=False),
              help="A MIDI file to continue: its notes are kept verbatim as the first bars.")
@click.option("--no-leadsheet", is_flag=True, help="Do not write the MusicXML lead sheet (melody and chord symbols).")
@click.option("--candidates", type=click.IntRange(1, 64), default=6, show_default=True,
              help="Pieces generated; the music-emotion estimator keeps the closest to the target.")
@click.option("--keep", type=click.IntRange(1, 64), default=1, show_default=True,
              help="How many of the best candidates to write.")
@click.option("--seed", type=int, default=None, help="Random seed (same seed and request, same piece).")
@click.option("--temperature", type=click.FloatRange(0.1, 4.0), default=1.0, show_default=True,
              help="Sampling temperature: above 1 wilder, below 1 safer.")
@click.option("--stem", default="moodsong", show_default=True, help="File name stem: STEM.mid, STEM.wav, STEM.png.")
@click.option("--audio", "audio_format", type=click.Choice(["wav", "flac", "ogg", "mp3", "none"]), default="wav",
              show_default=True, help="Audio format, or none.")
@click.option("--no-picture", is_flag=True, help="Do not draw the piano-roll picture.")
@click.option("--strength", type=float, default=None,
              help="How far the emotion condition is pushed: 1 = as learned, more = exaggerated "
                   "(default: the model's, 3).")
@click.option("--model",
              help="song (default: plan, melody, accompaniment), emotion-wavenet or emotion-crbm (the earlier "
                   "piano models), or a checkpoint path (a song model from train-song, or an emotion-conditional "
                   "model).")
@click.option("--backend", type=click.Choice(["auto", "pocketsphinx", "whisper"]), default="auto", show_default=True,
              help="Speech recognizer for --voice.")
@click.option("--whisper-model", type=click.Path(file_okay=False),
              help="Local faster-whisper model folder for --voice (never downloaded).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the text report.")
def compose(prompt, out_dir, voice, valence, arousal, quadrant, bars, form, key, tempo, instrument, primer,
            no_leadsheet, candidates, keep, seed, temperature, stem, audio_format, no_picture, strength, model, backend,
            whisper_model, as_json):
    """Compose a song that fits a feeling, and say what was understood and made.

    The feeling comes from PROMPT (English or Chinese), a spoken --voice file,
    explicit --valence/--arousal, or a --quadrant. The song model (learned from
    POP909's pop songs) first chooses a harmonic plan for the emotion (mode,
    chord qualities, harmonic rhythm) and prints it, then writes a melody and an
    accompaniment over it in a form with returning sections; --candidates songs
    are made and the music-emotion estimator keeps the closest to the target.
    Files: STEM.mid (tracks Melody and Accompaniment, chord markers), audio, a
    piano-roll picture and STEM.musicxml, a lead sheet for any notation program.

    \b
    Examples:
      moodsong compose "I want a song that expresses hope and wonder" --out songs/
      moodsong compose "一首悲伤缓慢的歌" --out songs/ --bars 32
      moodsong compose --voice request.wav --out songs/
      moodsong compose --valence -0.6 --arousal 0.7 --out songs/ --seed 3
      moodsong compose "a calm evening" --key "Eb major" --tempo 72 --instrument "flute,acoustic grand piano"
      moodsong compose "triumphant" --bars 32 --form "A A' B A'" --out songs/
      moodsong compose "keep it going, but sadder" --primer my_idea.mid --out songs/
      moodsong compose --quadrant 4 --candidates 10 --keep 2 --out songs/ --json
      moodsong compose --quadrant 2 --model emotion-wavenet --out songs/   # the earlier piano model
    """
    from moodsong.pipeline import ComposeRequest
    from moodsong.pipeline import compose as run_compose

    req = ComposeRequest(
        prompt=prompt, voice=voice, valence=valence, arousal=arousal, quadrant=quadrant, bars=bars,
        candidates=candidates, keep=keep, seed=seed, out_dir=out_dir, stem=stem,
        audio=None if audio_format == "none" else audio_format, picture=not no_picture, model=model,
        voice_backend=backend, whisper_model=whisper_model, temperature=temperature, strength=strength,
        form=form, key=key, tempo=tempo, instrument=instrument, primer=primer, leadsheet=not no_leadsheet,
    )
    result = run_compose(req)
    if as_json:
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        click.echo(result.summary())
