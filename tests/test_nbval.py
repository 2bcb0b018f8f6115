"""The seven notebooks against their committed reference outputs (nbval, smoke profile), as one test.

`make nbval` runs the same command on its own. Inside `make unit` it is one test file among the others, so
that pytest-xdist's two workers run it beside them instead of after them: the notebooks share one run
directory and must run in order, in one process. The references are regenerated with `make nbval-refs`."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ("01_train", "02_sensitivity", "03_prune_finetune", "04_weight_dists", "05_activations", "06_beyond",
             "07_across_seeds")


def test_the_notebooks_match_their_reference_outputs():
    shutil.rmtree(ROOT / "data" / "runs" / "nbval", ignore_errors=True)
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--nbval-lax",
               "--nbval-sanitize-with", "sanitize.cfg", *(f"{name}.ipynb" for name in NOTEBOOKS)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(command, cwd=ROOT / "tests" / "nbval", env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    summary = result.stdout.strip().splitlines()[-1]  # e.g. "103 passed in 352.10s": every checked cell
    passed = re.match(r"(\d+) passed(, \d+ warnings?)? in ", summary)
    assert passed and int(passed.group(1)) >= 10 * len(NOTEBOOKS), summary
