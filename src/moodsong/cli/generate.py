"""``moodsong generate``."""

from __future__ import annotations

from pathlib import Path

import click

from moodsong.cli.audio import renderer_options
from moodsong.cli.group import main
from moodsong.errors import MoodsongError


@main.command()
@click.option("--out", "out", default="songs", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the pieces.")
@click.option("--model", "model_path", type=click.Path(), default=None,
              help="Checkpoint (model.json) or a shipped model: pop-wavenet (default), bach-rbm, jsb-wavenet, "
                   "jsb-rnnrbm, nottingham-wavenet, musedata-wavenet, piano-midi-wavenet.")
@click.option("--bars", default=8, show_default=True, help="Length of each piece in 4/4 bars.")
@click.option("--pieces", default=1, show_default=True, help="Number of pieces.")
@click.option("--tempo", default=110.0, show_default=True, help="Tempo in quarter notes per minute.")
@click.option("--program", default=0, show_default=True,
              help="General MIDI program (0 = grand piano, 40 = violin, ...).")
@click.option("--velocity", default=80, show_default=True, help="MIDI velocity of every note (1-127).")
@click.option("--temperature", default=1.0, show_default=True, help="Above 1: wilder; below 1: safer.")
@click.option("--primer", type=click.Path(dir_okay=False), help="A MIDI file the piece continues from.")
@click.option("--fragments", is_flag=True, help="Also write each raw model window as its own MIDI file, like the demo.")
@click.option("--seed", type=int, default=None, help="Random seed; the same seed gives the same pieces.")
@click.option("--name", default="piece", show_default=True, help="File name stem.")
@click.option("--audio", type=click.Choice(["wav", "flac", "ogg", "mp3", "none"]), default="wav", show_default=True,
              help="Audio format to render, or none.")
@click.option("--picture/--no-picture", default=True, show_default=True, help="Draw the piano roll as PNG.")
@renderer_options
def generate(out, model_path, bars, pieces, tempo, program, velocity, temperature, primer, fragments, seed, name,
             audio, picture, renderer, soundfont):
    """Compose pieces with a trained model: MIDI, audio and a piano-roll picture.

    Prints each piece's chords, key, tempo and duration.

    \b
    Examples:
      moodsong generate --out songs/
      moodsong generate --bars 16 --pieces 3 --tempo 90 --seed 7 --out songs/
      moodsong generate --model runs/pop/model.json --program 24 --out songs/   # nylon guitar
      moodsong generate --model bach-rbm --fragments --out songs/   # the demo's RBM, with its raw fragments
      moodsong generate --primer start.mid --bars 8 --out songs/
      moodsong generate --audio flac --soundfont MyPiano.sf2 --out songs/
    """
    if bars < 1 or pieces < 1:
        raise MoodsongError("--bars and --pieces must be at least 1")
    if not 1 <= velocity <= 127 or not 0 <= program <= 127 or not 10 <= tempo <= 400:
        raise MoodsongError("--velocity must be 1-127, --program 0-127 and --tempo 10-400")
    if temperature <= 0:
        raise MoodsongError("--temperature must be positive")
    from moodsong.models.generate import generate_roll, load_model
    from moodsong.render.outputs import write_piece
    from moodsong.representation.pianoroll import midi_to_roll, roll_to_score, write_midi

    model, meta = load_model(model_path)
    if fragments and not hasattr(model.config, "num_timesteps"):
        raise MoodsongError("--fragments needs a window model such as the demo's RBM (--model bach-rbm)")
    config = model.config.pianoroll
    primer_roll = midi_to_roll(primer, config) if primer else None
    out_dir = Path(out)
    num_steps = bars * config.steps_per_bar()
    for i in range(pieces):
        piece_seed = None if seed is None else seed + i
        roll = generate_roll(model, num_steps, seed=piece_seed, temperature=temperature, primer=primer_roll)
        stem = f"{name}-{i}" if pieces > 1 else name
        score = roll_to_score(roll, config, qpm=tempo, program=program, velocity=velocity)
        report = write_piece(score, out_dir, stem, audio=None if audio == "none" else audio, picture=picture,
                             renderer=renderer, soundfont=soundfont)
        click.echo(report.summary())
        if fragments:
            T = model.config.num_timesteps
            for j in range(roll.shape[0] // T):
                write_midi(roll[j * T:(j + 1) * T], out_dir / f"{stem}-fragments" / f"fragment-{j}.mid", config,
                           qpm=tempo, program=program, velocity=velocity)
