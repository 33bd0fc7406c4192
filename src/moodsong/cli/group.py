"""The ``moodsong`` click group: user errors become one clear line."""

from __future__ import annotations

import sys

import click

from moodsong.errors import MoodsongError

# Import name -> pip name, where they differ.
_PIP_NAMES = {"fluidsynth": "pyfluidsynth", "faster_whisper": "faster-whisper", "sklearn": "scikit-learn",
              "multipart": "python-multipart", "PIL": "pillow"}


class _Group(click.Group):
    """A click group that prints :class:`MoodsongError` as one line, exit status 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MoodsongError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(2)
        except ModuleNotFoundError as exc:
            # Heavy and optional parts are imported inside the commands (so that --help starts at once);
            # a missing one is a user's set-up, said in one line. A missing moodsong module is a bug: traceback.
            top = (exc.name or "").split(".")[0]
            if not top or top == "moodsong":
                raise
            pip = _PIP_NAMES.get(top, top.replace("_", "-"))
            click.secho(f"error: this needs the Python package {pip!r}, which is not installed "
                        f"(pip install {pip})", fg="red", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="moodsong")
def main() -> None:
    """moodsong: tell it a feeling, it composes a piece that fits.

    \b
    Examples:
      moodsong generate --out songs/            # music from the shipped model
      moodsong prepare bach                     # cache a built-in corpus
      moodsong train my_midis/ --out runs/mine  # train on your own MIDI files
      moodsong info runs/mine/model.json        # what a checkpoint or MIDI file holds
    """
