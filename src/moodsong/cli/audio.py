"""``moodsong render``, ``moodsong play``, ``moodsong plot`` and ``moodsong chords``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from moodsong.cli.group import main
from moodsong.errors import MoodsongError


def renderer_options(f):
    """Options shared by every command that makes audio."""
    f = click.option(
        "--soundfont",
        type=click.Path(dir_okay=False),
        default=None,
        help="A General MIDI .sf2 file (default: $MOODSONG_SOUNDFONT, else TimGM6mb.sf2 from pretty_midi).",
    )(f)
    f = click.option(
        "--renderer",
        type=click.Choice(["auto", "midirenderer", "fluidsynth"]),
        default="auto",
        show_default=True,
        help="Synthesizer: FluidSynth (needs libfluidsynth3) or midirenderer (pip only); auto prefers FluidSynth.",
    )(f)
    return f


@main.command()
@click.argument("midi", type=click.Path(dir_okay=False))
@click.argument("out", required=False, type=click.Path(dir_okay=False))
@renderer_options
@click.option("--tail", type=float, default=1.5, show_default=True, help="Seconds kept after the last note-off.")
@click.option("--sample-rate", type=int, default=44100, show_default=True, help="Output sample rate (Hz).")
def render(midi, out, renderer, soundfont, tail, sample_rate):
    """Render a MIDI file to audio (.wav, .flac, .ogg or .mp3; stereo, peak-normalised).

    OUT defaults to MIDI with the suffix .wav.

    \b
    Examples:
      moodsong render song.mid                      # writes song.wav
      moodsong render song.mid song.flac --tail 3
      moodsong render song.mid song.ogg --renderer midirenderer --soundfont FluidR3_GM.sf2
    """
    from moodsong.render.audio import render as render_audio

    out = Path(out) if out else Path(midi).with_suffix(".wav")
    audio = render_audio(midi, renderer=renderer, soundfont=soundfont, sample_rate=sample_rate, tail_s=tail)
    audio.write(out)
    click.echo(
        f"wrote {out} ({audio.duration_s:.1f} s, {audio.sample_rate / 1000:g} kHz stereo, "
        f"{audio.renderer} with {audio.soundfont.name})"
    )


@main.command()
@click.argument("source", type=click.Path(dir_okay=False))
@renderer_options
def play(source, renderer, soundfont):
    """Play a MIDI or audio file through the speakers.

    Uses the sounddevice library when installed, else afplay, pw-play, paplay,
    aplay or ffplay. Says so (exit status 2) when the machine has no audio output.

    \b
    Examples:
      moodsong play song.mid
      moodsong play song.wav
      moodsong play song.mid --soundfont FluidR3_GM.sf2
    """
    from moodsong.render.audio import play as play_audio

    if not Path(source).is_file():
        raise MoodsongError(f"{source}: no such file")
    device = play_audio(source, renderer=renderer, soundfont=soundfont)
    click.echo(f"played {source} with {device.name}")


@main.command()
@click.argument("midi", type=click.Path(dir_okay=False))
@click.argument("out", required=False, type=click.Path(dir_okay=False))
@click.option("--title", default=None, help="Picture title (default: file name and key).")
@click.option("--color-by", type=click.Choice(["velocity", "track"]), default="velocity", show_default=True)
@click.option("--width", type=int, default=1600, show_default=True, help="Width in pixels.")
@click.option("--height", type=int, default=700, show_default=True, help="Height in pixels.")
def plot(midi, out, title, color_by, width, height):
    """Draw a piano-roll picture of a MIDI file (.png or .svg).

    Pitch names on the y-axis, bar numbers and a beat grid on the x-axis, a dark
    mark where each note is struck, colours by velocity or by track.
    OUT defaults to MIDI with the suffix .png.

    \b
    Examples:
      moodsong plot song.mid                       # writes song.png
      moodsong plot song.mid roll.svg --color-by track --title "My song"
    """
    from moodsong.render.pictures import save_pianoroll
    from moodsong.representation.chords import estimate_key
    from moodsong.representation.pianoroll import read_score

    out = Path(out) if out else Path(midi).with_suffix(".png")
    score = read_score(midi)
    if title is None:
        key = estimate_key(score)
        title = f"{Path(midi).name}" + (f" ({key})" if key else "")
    save_pianoroll(score, out, title=title, color_by=color_by, width_px=width, height_px=height)
    click.echo(f"wrote {out} ({width} x {height})")


@main.command()
@click.argument("midi", type=click.Path(dir_okay=False))
@click.option("--per", type=click.Choice(["bar", "beat"]), default="bar", show_default=True,
              help="One chord per bar or per beat.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def chords(midi, per, as_json):
    """Print the chord progression and estimated key of a MIDI file.

    \b
    Examples:
      moodsong chords song.mid
      moodsong chords song.mid --per beat --json
    """
    from moodsong.representation.chords import analyze

    progression = analyze(midi, per=per)
    if as_json:
        d = {
            "key": progression.key,
            "per": per,
            "chords": [
                {"bar": s.bar, "start_q": s.start_q, "end_q": s.end_q, "chord": s.name} for s in progression.segments
            ],
        }
        click.echo(json.dumps(d, indent=2))
    else:
        click.echo(f"key: {progression.key or '-'}")
        click.echo(progression.format())
