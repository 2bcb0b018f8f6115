"""Several seeds of one study: one run per seed, and their results as mean and spread.

The seed drives everything of a run: the validation split, the dense model's initialisation,
batch order and augmentation, and every step after it. A study with seeds ``[0, 1, 2]`` opened
from the run in ``data/runs/cpu`` (seed 0) keeps the other seeds' runs inside it, in
``data/runs/cpu/seed-1`` and ``data/runs/cpu/seed-2``: each is an ordinary run with its own keyed
artifacts, so a seed that has finished is reused, and a study stopped halfway resumes where it
stopped.

:func:`mean_spread` turns one row per seed into mean, standard deviation (``ddof=1``), min, max
and the number of seeds. Two methods measured on the same seeds are compared on their per-seed
differences (:func:`paired_difference`: a paired t-test), never on two spreads as if the seeds were
independent samples.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .artifacts import recorded_steps
from .runs import NotComputed, Run, open_run


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """``seeds`` as a list of distinct non-negative ints; ValueError otherwise."""
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or not seeds:
        raise ValueError(f"seeds must be a non-empty list of non-negative integers, got {seeds!r}")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ValueError(f"seeds must be non-negative integers, got {s!r} in {list(seeds)!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {list(seeds)!r}")
    return list(seeds)


def seed_run_dir(study_dir: Path, study_seed: int, seed: int) -> Path:
    """Where the run of ``seed`` lives in the study whose own run (seed ``study_seed``) is in
    ``study_dir``: that directory itself, or ``<study_dir>/seed-<seed>``."""
    return study_dir if seed == study_seed else study_dir / f"seed-{seed}"


def seed_runs(run: Run, seeds: Sequence[int]) -> list[Run]:
    """The runs of ``seeds`` in ``run``'s study, opened with ``run``'s profile, data and overrides."""
    runs = []
    for seed in check_seeds(seeds):
        if seed == run.seed:
            runs.append(run)
            continue
        args = run.opened_with
        runs.append(open_run(args["profile"], seed_run_dir(run.run_dir, run.seed, seed), seed, args["data_source"],
                             figures_dir=run.figures_dir / f"seed-{seed}", force=run.force, progress=run.progress,
                             compute=run.compute, **args["overrides"]))
    return runs


def mean_spread(frame: pd.DataFrame, by: str | list[str], columns: Sequence[str]) -> pd.DataFrame:
    """Per group of ``by``: mean, sd (ddof=1; NaN for one seed), min, max of ``columns``, and n."""
    grouped = frame.groupby(by, sort=False)
    stats = grouped[list(columns)].agg(["mean", "std", "min", "max"])
    stats = stats.rename(columns={"std": "sd"}, level=1)
    stats[("n", "")] = grouped.size()
    return stats


def paired_difference(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """``a - b`` for two methods measured on the same seeds (``a[i]`` and ``b[i]``: one seed), judged on
    the per-seed differences with Student's paired t-test.

    Returns ``n``, the ``mean`` and ``sd`` (ddof=1) of the differences, ``t`` = mean / (sd / sqrt(n))
    and its two-sided ``p`` (n - 1 degrees of freedom). One pair: sd, t and p are NaN. Differences
    all equal: sd 0, and p 0 (1 if they are all 0).
    """
    if len(a) != len(b) or not len(a):
        raise ValueError(f"paired values need two lists of one length, got {len(a)} and {len(b)}")
    d = [float(x) - float(y) for x, y in zip(a, b)]
    n, mean = len(d), statistics.fmean(d)
    if n < 2:
        return {"n": n, "mean": mean, "sd": math.nan, "t": math.nan, "p": math.nan}
    sd = statistics.stdev(d)
    if sd == 0:
        return {"n": n, "mean": mean, "sd": 0.0, "t": math.copysign(math.inf, mean) if mean else 0.0,
                "p": 0.0 if mean else 1.0}
    t = mean / (sd / math.sqrt(n))
    return {"n": n, "mean": mean, "sd": sd, "t": t, "p": t_two_sided_p(t, n - 1)}


def t_two_sided_p(t: float, df: int) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` (integer >= 1) degrees of freedom: the closed forms
    of Abramowitz & Stegun 26.7.3 (odd df) and 26.7.4 (even df)."""
    if df < 1 or df != int(df):
        raise ValueError(f"df must be a positive integer, got {df!r}")
    theta = math.atan(abs(t) / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2:  # A = 2/pi * (theta + sin(theta) * (cos + 2/3 cos^3 + ...)), ending at cos^(df-2)
        term, series = math.cos(theta), 0.0
        for k in range((df - 1) // 2):
            series += term
            term *= (2 * k + 2) / (2 * k + 3) * c2
        inside = 2 / math.pi * (theta + math.sin(theta) * series)
    else:  # A = sin(theta) * (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ...), ending at cos^(df-2)
        term, series = 1.0, 0.0
        for k in range(df // 2):
            series += term
            term *= (2 * k + 1) / (2 * k + 2) * c2
        inside = math.sin(theta) * series
    return min(1.0, max(0.0, 1.0 - inside))


def format_mean_sd(mean: float, sd: float, decimals: int = 1) -> str:
    """``"80.1 ± 0.4"``, or just the mean when sd is undefined (one seed)."""
    if math.isnan(sd):
        return f"{mean:.{decimals}f}"
    return f"{mean:.{decimals}f} ± {sd:.{decimals}f}"


def per_seed(runs: Sequence[Run], frame_of) -> pd.DataFrame:
    """``frame_of(run)`` for every run, concatenated with a ``seed`` column first.

    A read-only run (``compute=False``) whose step is not stored is left out: the frame holds the
    seeds that have it, and ``frame.attrs["missing"]`` maps each left-out seed to the reason
    (:func:`missing_note` words it). Runs that may compute never leave a seed out."""
    frames, missing = [], {}
    for run in runs:
        try:
            frames.append(frame_of(run).assign(seed=run.seed))
        except NotComputed as error:
            missing[run.seed] = f"{error.step}: {error.status}"
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"seed": []})
    frame = frame[["seed"] + [c for c in frame.columns if c != "seed"]]
    frame.attrs["missing"] = missing
    return frame


def missing_note(frame: pd.DataFrame, seeds: Sequence[int]) -> str:
    """One line for a :func:`per_seed` frame: which of ``seeds`` it holds and which are not computed
    yet (empty when it holds them all)."""
    missing = frame.attrs.get("missing", {})
    if not missing:
        return ""
    held = [s for s in seeds if s not in missing]
    reasons = "; ".join(f"seed {s}: {why}" for s, why in missing.items())
    return (f"**Not computed yet for seed{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))}** "
            f"(this report only reads stored results). Shown: {'seeds ' + ', '.join(map(str, held)) if held else 'nothing'}. "
            f"Missing: {reasons}.")


def show_missing(frame: pd.DataFrame, seeds: Sequence[int]) -> bool:
    """Display :func:`missing_note` (in a notebook) when ``frame`` lacks some of ``seeds``; True if
    it holds anything to show."""
    note = missing_note(frame, seeds)
    if note:
        from IPython.display import Markdown, display

        display(Markdown(note))
    return len(frame) > 0


def result_or_note(run: Run, result_of):
    """``result_of(run)``, any result (notebooks 04-06: the models of Table 2); in a read-only run whose
    step is not current, None, after displaying why (:func:`show_missing`)."""
    try:
        return result_of(run)
    except NotComputed as error:
        frame = pd.DataFrame({"seed": []})
        frame.attrs["missing"] = {run.seed: f"{error.step}: {error.status}"}
        show_missing(frame, [run.seed])
        return None


def current_or_note(run: Run, frame_of) -> pd.DataFrame | None:
    """``frame_of(run)`` for one run (a section of notebook 06); in a read-only run whose step is
    not current, None, after displaying why (:func:`result_or_note`); None too when it is empty."""
    frame = result_or_note(run, frame_of)
    return frame.reset_index(drop=True) if frame is not None and len(frame) else None


def step_seconds(runs: Sequence[Run]) -> pd.DataFrame:
    """Wall-clock seconds of every recorded step of every run (:func:`pruning_utils.artifacts.recorded_steps`),
    with a ``seed`` column: what each step cost when it was computed, and where."""
    return per_seed(runs, lambda run: recorded_steps(run.run_dir))
