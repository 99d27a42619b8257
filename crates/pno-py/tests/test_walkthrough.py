"""The walkthrough runs as a user would run it, and draws its plot."""

import subprocess
import sys
from pathlib import Path


def test_walkthrough_runs(tmp_path, pno_bin):
    script = Path(__file__).resolve().parents[1] / "walkthrough.py"
    r = subprocess.run([sys.executable, str(script), str(tmp_path), pno_bin],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "coverage@90" in r.stdout
    png = tmp_path / "reliability.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
