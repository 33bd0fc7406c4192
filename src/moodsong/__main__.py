"""``python -m moodsong``: the same command line as ``moodsong`` (for environments without the console script)."""

from moodsong.cli import main

if __name__ == "__main__":
    main(prog_name="moodsong")
