"""reports/calibration.md is written in named sections: a script rewrites its own and keeps the others."""
import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "sections", Path(__file__).parents[1] / "benchmarks" / "calibration" / "sections.py")
sections = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sections)


def test_a_section_is_rewritten_and_the_others_kept(tmp_path):
    path = tmp_path / "calibration.md"
    sections.write_section("dpo", "## DPO\nfirst", path)
    sections.write_section("rl", "## RL\nsweep", path)
    sections.write_section("dpo", "## DPO\nsecond", path)
    text = path.read_text()
    assert text.startswith(sections.TITLE)
    assert "first" not in text and "second" in text and "## RL\nsweep" in text
    assert text.index("## DPO") < text.index("## RL")  # a rewritten section keeps its place
    assert text.count("<!-- section: dpo -->") == 1 and text.count("<!-- end: rl -->") == 1


def test_text_outside_sections_survives(tmp_path):
    path = tmp_path / "calibration.md"
    path.write_text("# Records\n\nhand-written history\n")
    sections.write_section("pool", "table", path)
    sections.write_section("pool", "table 2", path)
    assert path.read_text().startswith("# Records\n\nhand-written history\n")
    with pytest.raises(ValueError):
        sections.write_section("Bad Name", "x", path)
