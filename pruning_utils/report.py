"""Run the study's notebooks with papermill and render them as one HTML report.

``python -m pruning_utils.report --profile cpu`` executes ``notebooks/01_train`` ... in order
into ``<run_dir>/notebooks/`` and writes ``<run_dir>/report.html``: every notebook's prose,
tables and figures (embedded), code hidden, with a table of contents.

Every notebook is executed every time: whether work is redone is decided inside, step by step,
by the keys of :mod:`pruning_utils.artifacts` (a rerun with nothing changed reuses every stored
result, and each notebook ends with the list of steps it computed or reused). ``--force`` passes
``force=True`` to every notebook, which recomputes all their steps; ``--stored`` passes
``compute=False``, which computes nothing: the report shows the run's stored results that are
current (notebook 07 says which seeds still lack a step, notebooks 04-06 which section is not
current; notebooks 01-03 fail on a missing one). A notebook is executed into a hidden partial
file that replaces the executed copy only when papermill finished it, and the whole report holds
the run directory's lock (:func:`pruning_utils.runs.run_lock`), so a killed or concurrent report
never leaves a copy that looks complete; a run directory that cannot be written, or a report whose
package is another checkout's, is refused before any work. The kernels get this checkout's root
first on ``$PYTHONPATH`` (:func:`kernel_environment`), so they import the package the report
imported, whichever checkout a shared virtualenv's editable install points at. Cell output (the
steps, epochs) is streamed to the terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat

from .artifacts import spec_for, write_text_atomic
from .data import SOURCE_ENV_VAR
from .runs import (LOCK_ENV_VAR, RUN_DIR_ENV_VAR, CheckoutMismatchError, RunBusyError, RunDirectoryError,
                   check_checkout, project_root, resolve_path, resolve_profile_name, run_lock)

NOTEBOOKS: tuple[str, ...] = ("01_train", "02_sensitivity", "03_prune_finetune", "04_weight_dists", "05_activations",
                              "06_beyond", "07_across_seeds")
MULTI_SEED_NOTEBOOKS: tuple[str, ...] = ("07_across_seeds",)  # run only when the study has several seeds
STUDY_FILE = "study.json"
APPENDIX_TITLE = "Appendix: logs and settings"  # <run_dir>/study.json: the seeds of the study, written by --seeds


def notebook_dir() -> Path:
    return project_root() / "notebooks"


def available_notebooks() -> tuple[str, ...]:
    """The study notebooks present in ``notebooks/``, in order."""
    return tuple(name for name in NOTEBOOKS if (notebook_dir() / f"{name}.ipynb").exists())


def check_parameters(notebook: Path, parameters: dict) -> None:
    """Refuse parameter names the notebook does not declare (papermill would only warn)."""
    import papermill

    declared = papermill.inspect_notebook(str(notebook))
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise ValueError(f"{notebook.name} has no parameter(s) {unknown}; its parameters: {', '.join(declared)}")


class _CellOutputOnly(logging.Filter):
    """Keep papermill's streamed cell output, drop its per-cell banners."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not (text.startswith(("Executing Cell", "Ending Cell", "Executing notebook", "Input Notebook",
                                     "Output Notebook", "Executing:", "Black is not installed", "Working directory"))
                    or not text.strip())


def shown_results(run_dir: Path, notebook: str) -> dict[str, tuple[str, str | None]]:
    """What ``notebook`` can show of the run in ``run_dir``, as of now: every artifact recorded there
    that this or an earlier notebook makes (:data:`pruning_utils.artifacts.REGISTRY`), as its key
    and, unless its bytes hold timings, its content's sha256. An unreadable or unknown record counts
    too. The seeds' runs (``seed-<n>/``) are left out: only notebook 07, the last, shows them."""
    order = {name: index for index, name in enumerate(NOTEBOOKS)}
    state = {}
    for path in sorted((run_dir / "provenance").glob("*.json")):
        try:
            record = json.loads(path.read_text())
            spec = spec_for(record["artifact"])
            if order.get(spec.notebook, -1) <= order.get(notebook, len(order)):
                state[path.name] = (record["key"], None if spec.timed else record["sha256"])
        except (OSError, ValueError, KeyError, TypeError):
            state[path.name] = ("unreadable or unknown", None)
    return state


def changed_after(shown: dict[str, tuple[str, str | None]], now: dict[str, tuple[str, str | None]]) -> list[str]:
    """The records in ``shown`` (:func:`shown_results` when a notebook finished) that have since changed or gone."""
    return [name for name, value in shown.items() if now.get(name) != value]


def run_notebooks(
    run_dir: Path,
    parameters: dict,
    notebooks: tuple[str, ...] | None = None,
    log=print,
    stream: bool = True,
) -> list[Path]:
    """Execute ``notebooks`` in order into ``run_dir/notebooks``, holding the run's lock; return the copies.

    A later notebook may change what an earlier one showed: a model that is not committed is
    recomputed (keyed) by the first notebook that reads the file, and if it comes out different
    from its record (another CPU), the results that read it are recomputed when next asked.
    Notebooks whose shown results (:func:`shown_results`) changed after they ran are executed once
    more at the end, without ``force`` (everything is current by then), so no copy shows a result
    that the run no longer holds."""
    import papermill

    notebooks = notebooks or available_notebooks()
    out_dir = run_dir / "notebooks"
    if stream:
        handler = logging.StreamHandler(sys.stdout)
        handler.addFilter(_CellOutputOnly())
        handler.setFormatter(logging.Formatter("    %(message)s"))
        logger = logging.getLogger("papermill")
        logger.handlers = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False

    def execute(name: str, label: str, params: dict) -> Path:
        source = notebook_dir() / f"{name}.ipynb"
        target = out_dir / f"{name}.ipynb"
        partial = out_dir / f".{name}.partial.ipynb"
        params = {k: v for k, v in params.items() if k in papermill.inspect_notebook(str(source))}
        check_parameters(source, params)
        log(f"[{label}] {name}: running ...")
        started = time.perf_counter()
        papermill.execute_notebook(str(source), str(partial), parameters=params, cwd=str(notebook_dir()),
                                   kernel_name="python3", progress_bar=False, log_output=stream)
        _relative_papermill_paths(partial, target)
        os.replace(partial, target)
        log(f"[{label}] {name}: done in {time.perf_counter() - started:.0f} s")
        return target

    executed, shown = [], {}
    with run_lock(run_dir), kernel_environment(run_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
        for index, name in enumerate(notebooks, 1):
            executed.append(execute(name, f"{index}/{len(notebooks)}", parameters))
            shown[name] = shown_results(run_dir, name)
        changed = {name: changed_after(state, shown_results(run_dir, name)) for name, state in shown.items()}
        again = {name: names for name, names in changed.items() if names}
        for index, (name, names) in enumerate(again.items(), 1):
            log(f"[again {index}/{len(again)}] {name}: {len(names)} of the results it showed changed after it "
                f"ran ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''}); running it again")
            execute(name, f"again {index}/{len(again)}", {**parameters, "force": False})
    return executed


@contextlib.contextmanager
def kernel_environment(run_dir: Path) -> Iterator[None]:
    """What the notebooks' kernels inherit, set in ``os.environ`` meanwhile: the run's lock, which
    this process holds (``$PRUNING_RUN_LOCK``), and this checkout's root first on ``$PYTHONPATH``, so
    that a kernel imports this checkout's ``pruning_utils`` even where the virtualenv's editable
    install points at another checkout (a kernel starts in ``notebooks/``, where nothing else puts
    the package on its path)."""
    values = {LOCK_ENV_VAR: str(run_dir.resolve()), "PYTHONPATH": str(project_root())}
    saved = {name: os.environ.get(name) for name in values}
    for name, value in values.items():
        os.environ[name] = os.pathsep.join(filter(None, [value, saved[name]]))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _relative_papermill_paths(path: Path, output: Path) -> None:
    """Record papermill's input path relative to the project and ``output`` as its output path."""
    nb = nbformat.read(path, as_version=4)
    nb.metadata.setdefault("papermill", {})["output_path"] = str(output)
    meta = nb.metadata.get("papermill", {})
    for key in ("input_path", "output_path"):
        if meta.get(key):
            try:
                meta[key] = str(Path(meta[key]).resolve().relative_to(project_root()))
            except ValueError:
                pass
    nbformat.write(nb, path)


def _anchor(title: str) -> str:
    """The id nbconvert gives a markdown heading."""
    return re.sub(r"\s", "-", title.strip())


def _first_title(nb: nbformat.NotebookNode) -> str:
    """The notebook's first level-1 heading: its section title in the report ("" if it has none)."""
    titles = (re.search(r"^# (.+)$", c.source, flags=re.M) for c in nb.cells if c.cell_type == "markdown")
    return next((t.group(1) for t in titles if t), "")


def _below_level_two(cell: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """An appendix cell with its markdown headings one level down, under the appendix's per-notebook
    level-2 heading (``## Steps`` -> ``### Steps``); other cells unchanged."""
    if cell.cell_type != "markdown":
        return cell
    return nbformat.from_dict({**cell, "source": re.sub(r"^(#{1,5}) ", r"#\1 ", cell.source, flags=re.M)})


def render_html(executed: list[Path], output: Path, title: str, label: str = "") -> Path:
    """One self-contained HTML page from executed notebooks: code hidden, figures embedded, TOC.

    The sections read as a report: what cells printed while running (step and epoch logs) and the
    cells tagged ``appendix`` (settings, step tables) move to an appendix at the end, per notebook."""
    from nbconvert import HTMLExporter

    merged = nbformat.v4.new_notebook()
    merged.metadata = nbformat.read(executed[0], as_version=4).metadata
    toc = [f"# {title}", "", *([f"Run: {label}", ""] if label else []), "Contents:", ""]
    appendix = [nbformat.v4.new_markdown_cell(
        f"# {APPENDIX_TITLE}\n\nWhat each notebook printed while it ran (steps, epochs) and its settings, "
        "kept here so the sections above read as a report.")]
    for path in executed:
        nb = nbformat.read(path, as_version=4)
        logs = []
        for cell in nb.cells:
            tags = cell.metadata.get("tags", [])
            if "injected-parameters" in tags or "parameters" in tags:
                continue
            if cell.cell_type == "markdown":
                if "appendix" in tags:
                    logs.append(cell)
                    continue
                for line in cell.source.splitlines():
                    match = re.match(r"^(#{1,2}) (.+)$", line)
                    if match:
                        indent = "    " * (len(match.group(1)) - 1)
                        toc.append(f"{indent}- [{match.group(2)}](#{_anchor(match.group(2))})")
                merged.cells.append(cell)
                continue
            if "appendix" in tags:
                logs.append(cell)
                continue
            streams = [o for o in cell.get("outputs", []) if o.get("output_type") == "stream"]
            if streams:
                logs.append(nbformat.v4.new_code_cell(outputs=streams))
                cell = nbformat.from_dict({**cell, "outputs": [o for o in cell.outputs if o not in streams]})
            merged.cells.append(cell)
        if logs:
            appendix.append(nbformat.v4.new_markdown_cell(f"## {path.stem}: {_first_title(nb)}"))
            appendix.extend(_below_level_two(cell) for cell in logs)
    merged.cells.insert(0, nbformat.v4.new_markdown_cell("\n".join(toc + [f"- [{APPENDIX_TITLE}](#{_anchor(APPENDIX_TITLE)})"])))
    merged.cells.extend(appendix)
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(merged)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(body, encoding="utf-8")
    return output


def _portable(source: str) -> str:
    """A data-source path as the notebooks receive it: relative to the project root (which they
    resolve it against), so executed notebooks hold no machine paths; other values unchanged."""
    if not source or source in ("torchvision", "synthetic") or not Path(source).is_absolute():
        return source
    return os.path.relpath(source, project_root())


def parse_seeds(text: str) -> list[int]:
    """``"0 1 2"`` or ``"0,1,2"`` -> ``[0, 1, 2]``; ValueError on anything else."""
    from .across_seeds import check_seeds

    try:
        seeds = [int(part) for part in re.split(r"[\s,]+", text.strip()) if part]
    except ValueError:
        raise ValueError(f"--seeds takes non-negative integers separated by spaces or commas, got {text!r}") from None
    return check_seeds(seeds)


def study_seeds(run_dir: Path, seed: int, given: str | None) -> list[int]:
    """The seeds to run: ``given`` (then recorded in ``study.json``, which
    :func:`pruning_utils.staleness.study_run_dirs` reads), else just ``seed``: one seed stays the
    quick default, whatever a study recorded."""
    if not given:
        return [seed]
    seeds = parse_seeds(given)
    if seed not in seeds:
        raise ValueError(f"--seeds {given!r} must include the run's seed {seed}")
    with run_lock(run_dir):
        write_text_atomic(run_dir / STUDY_FILE, json.dumps({"seeds": seeds}, indent=2) + "\n")
    return seeds


def parse_settings(items: list[str]) -> dict:
    """``["finetune_epochs=2", "threshold=0.6"]`` -> ``{"finetune_epochs": 2, "threshold": 0.6}`` (values
    read as JSON where they parse, else kept as strings)."""
    settings = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--set takes SETTING=VALUE, got {item!r}")
        try:
            settings[name] = json.loads(value)
        except ValueError:
            settings[name] = value
    return settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="", help="paper | cpu | smoke (default: cpu without a GPU)")
    parser.add_argument("--run-dir", default="", help="default: $PRUNING_RUN_DIR or data/runs/<profile>")
    parser.add_argument("--seed", type=int, default=0, help="the seed of the run notebooks 01-06 show")
    parser.add_argument("--seeds", default=None,
                        help='every seed of the study, e.g. "0 1 2" (recorded in <run_dir>/study.json); with more '
                             'than one, notebook 07 compares them. Default: --seed alone')
    parser.add_argument("--data-source", default="", help="default: $PRUNING_DATA_SOURCE")
    parser.add_argument("--force", action="store_true", help="recompute every step (passes force=True to each notebook)")
    parser.add_argument("--stored", action="store_true",
                        help="compute nothing: show only stored, current results (passes compute=False)")
    parser.add_argument("--notebooks", nargs="*", help=f"subset of {', '.join(NOTEBOOKS)}")
    parser.add_argument("--set", action="append", default=[], metavar="SETTING=VALUE",
                        help="change a profile setting for every notebook, e.g. --set finetune_epochs=2 (repeatable)")
    args = parser.parse_args(argv)
    try:
        return _report(parser, args)
    except (CheckoutMismatchError, RunBusyError, RunDirectoryError) as error:  # refused before any work: no traceback
        print(f"error: {error}", file=sys.stderr)
        return 2


def _report(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    check_checkout()
    profile = resolve_profile_name(args.profile)
    from .config import get_profile

    if args.force and args.stored:
        parser.error("--force recomputes every step and --stored computes none: choose one")
    overrides = parse_settings(args.set)
    try:
        get_profile(profile, **overrides)  # fail on a bad name or value before any work
    except ValueError as error:
        parser.error(str(error))
    run_dir = resolve_path(args.run_dir or os.environ.get(RUN_DIR_ENV_VAR) or f"data/runs/{profile}")
    unknown = sorted(set(args.notebooks or ()) - set(NOTEBOOKS))
    if unknown:
        parser.error(f"unknown notebook(s) {unknown}; valid: {', '.join(NOTEBOOKS)}")
    try:  # keep executed notebooks free of machine paths
        run_dir_param = str(run_dir.relative_to(project_root()))
    except ValueError:
        run_dir_param = str(run_dir)
    try:
        seeds = study_seeds(run_dir, args.seed, args.seeds)
    except ValueError as error:
        parser.error(str(error))
    notebooks = tuple(args.notebooks or ()) or tuple(
        n for n in available_notebooks() if len(seeds) > 1 or n not in MULTI_SEED_NOTEBOOKS)
    parameters = {"profile": profile, "run_dir": run_dir_param, "seed": args.seed, "seeds": seeds,
                  "data_source": _portable(args.data_source or os.environ.get(SOURCE_ENV_VAR, "")), "force": args.force,
                  "compute": not args.stored, "overrides": overrides}
    print(f"study: profile {profile}, run directory {run_dir}, seeds {seeds}", flush=True)
    executed = run_notebooks(run_dir, parameters, notebooks, log=lambda m: print(m, flush=True))
    output = render_html(executed, run_dir / "report.html", f"Pruning and sparsity, revisited ({profile} profile)",
                         f"{run_dir_param}, seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}")
    print(f"report: {output}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
