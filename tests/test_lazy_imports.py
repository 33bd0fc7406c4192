"""Heavy libraries load only where they are used (issue 13: `--help` and the compose path start fast).

Each check runs a fresh interpreter and looks at ``sys.modules``: a module imported
by any test in this process would otherwise hide a regression.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "music21", "matplotlib", "fastapi", "transformers", "sentence_transformers", "uvicorn", "numba")


def loaded_after(code: str) -> set[str]:
    """Which of HEAVY are in sys.modules after running ``code`` in a fresh interpreter."""
    probe = code + f"\nimport sys, json\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_cli_imports_no_heavy_library():
    assert loaded_after("import moodsong.cli") == set()


@pytest.mark.parametrize("args", [["--help"], ["compose", "--help"], ["train", "--help"], ["generate", "--help"],
                                  ["serve", "--help"], ["plot", "--help"], ["train-seq", "--help"]])
def test_help_imports_no_heavy_library(args):
    code = ("import sys\nfrom moodsong.cli import main\n"
            f"try:\n    main({args!r}, standalone_mode=False)\nexcept SystemExit:\n    pass")
    assert loaded_after(code) == set()


@pytest.mark.parametrize("module, args", [("uvicorn", ["serve"]), ("matplotlib", ["plot", "{midi}", "{out}.svg"])])
def test_missing_optional_part_is_one_clear_line(tmp_path, module, args):
    import symusic

    midi = tmp_path / "a.mid"
    s = symusic.Score(480)
    t = symusic.Track("p", 0, False)
    t.notes.append(symusic.Note(0, 480, 60, 80))
    s.tracks.append(t)
    s.dump_midi(str(midi))
    args = [a.format(midi=midi, out=tmp_path / "roll") for a in args]
    code = (f"import sys\nsys.modules[{module!r}] = None  # as if not installed\n"
            f"from moodsong.cli import main\nmain({args!r})")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and module in lines[0] and "pip install" in lines[0], r.stderr


def test_package_root_exports_the_public_api_lazily():
    """``import moodsong`` loads nothing heavy; each public name resolves to its defining module's object."""
    import subprocess
    import sys

    code = (
        "import sys, moodsong\n"
        "heavy = [m for m in ('torch', 'music21', 'moodsong.pipeline') if m in sys.modules]\n"
        "from moodsong.pipeline import ComposeRequest\n"
        "from moodsong.errors import MoodsongError\n"
        "assert moodsong.ComposeRequest is ComposeRequest and moodsong.SongModel.__name__ == 'SongModel'\n"
        "assert moodsong.MoodsongError is MoodsongError and set(moodsong.__all__) <= set(dir(moodsong))\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
