"""The findings the notebooks state in their text hold on the committed run.

Each finding in a notebook's markdown is followed by a cell ``if claims: assert ...`` on the numbers
above it; ``claims`` is true for the cpu profile, whose run the text describes. Executing the
notebooks on the committed multi-seed run without computing (``make report STORED=1 SEEDS="0 1 2"``)
runs every such assert, so a result that contradicts the text fails here instead of being shown."""

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from pruning_utils import report
from pruning_utils.runs import SHARED_ARCHIVE, resolve_path

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "data" / "runs" / "cpu"
needs_archive = pytest.mark.skipif(not resolve_path(SHARED_ARCHIVE).is_file(),
                                   reason=f"the CIFAR-10 JPEG copy {SHARED_ARCHIVE} is not beside this checkout")


def claim_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """The cells that check a stated finding: ``if claims ...:`` (or ``if ... and claims:``) and asserts."""
    return [c for c in notebook.cells if c.cell_type == "code" and c.source.startswith("if ")
            and "claims" in c.source.split("\n")[0]]


def stated() -> dict[str, int]:
    """How many claim cells each notebook has (those without any are left out)."""
    counts = {p.stem: len(claim_cells(nbformat.read(p, 4))) for p in sorted((ROOT / "notebooks").glob("*.ipynb"))}
    return {name: n for name, n in counts.items() if n}


def test_every_stated_finding_is_followed_by_its_check():
    """Where a notebook states findings it defines ``claims`` from the profile once, and each claim cell
    asserts something right after the markdown that states it (at most one table between them)."""
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, 4)
        cells = claim_cells(nb)
        setup = [c for c in nb.cells if "claims = run.profile.name" in c.source]
        assert len(setup) == (1 if cells else 0), path.name
        for cell in cells:
            i = nb.cells.index(cell)
            before = [c.cell_type for c in nb.cells[max(0, i - 2):i]]
            assert "markdown" in before and "assert " in cell.source, (path.name, cell.source)
    assert sum(stated().values()) >= 14 and len(stated()) >= 6  # 01-04, 06, 07 state findings


@needs_archive
@pytest.mark.slow
def test_every_claim_holds_on_the_committed_run(tmp_path):
    run_dir = tmp_path / "cpu"
    shutil.copytree(COMMITTED, run_dir, ignore=shutil.ignore_patterns("notebooks", "report.html", ".lock", "figures"))
    expected = stated()  # only the notebooks that state findings
    code = report.main(["--profile", "cpu", "--run-dir", str(run_dir), "--stored", "--seeds", "0 1 2",
                        "--data-source", str(resolve_path(SHARED_ARCHIVE)), "--notebooks", *expected])
    assert code == 0
    executed = sorted((run_dir / "notebooks").glob("*.ipynb"))
    assert [p.stem for p in executed] == list(expected)
    ran = {}
    for path in executed:
        nb = nbformat.read(path, 4)
        for cell in claim_cells(nb):  # executed, without an error output
            assert cell.execution_count is not None, (path.name, cell.source)
            assert not any(o.get("output_type") == "error" for o in cell.outputs), (path.name, cell.source)
            ran[path.stem] = ran.get(path.stem, 0) + 1
        assert "Traceback" not in json.dumps(nb.cells), path.name
    assert ran == expected
