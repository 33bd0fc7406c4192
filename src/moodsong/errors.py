"""Errors a user can cause.

Anything raised as :class:`MoodsongError` is shown by the command line as one
clear line (no traceback) and exits with status 2.
"""


class MoodsongError(Exception):
    """A problem with the user's input: a bad path, file, prompt or checkpoint."""


class BadMidiError(MoodsongError):
    """A file that cannot be read as MIDI."""


class BadCheckpointError(MoodsongError):
    """A checkpoint that is missing, truncated or does not match its config."""
