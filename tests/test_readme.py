"""The README's findings are the committed run's numbers, and its claims hold on them.

The section "What the study found" of README.md holds one table and a few sentences. Every number
in it is recomputed here from the committed multi-seed run (``data/runs/cpu`` with ``seed-1`` and
``seed-2``) with pandas, at the rounding the README displays:

- the table is parsed and compared cell by cell with :func:`expected_table`;
- each number in the sentences sits in one of the phrases of :func:`expected_phrases` (a phrase is
  a literal piece of a sentence with its numbers formatted from the run, matched with line breaks
  read as spaces), and a number in the section that no phrase or table cell covers is reported as
  unchecked.

A run that changes a number fails here until the README says the new one; an edit of a number in
the README fails too (:func:`test_the_checker_fails_on_each_changed_number`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from pruning_utils.across_seeds import paired_difference
from pruning_utils.allocation import collapsing_layers
from pruning_utils.config import get_profile
from pruning_utils.frontier import frontier_sizes
from pruning_utils.model_files import load_model
from pruning_utils.latency import speed_verdict
from pruning_utils.tables import PAIRED, at_equal_size, narrow_table

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "data" / "runs" / "cpu"
README = ROOT / "README.md"
HEADING = "## What the study found"
NUMBER = re.compile(r"(?<![\w.#-])\d(?:[\d,]*\d)?(?:\.\d+)?")  # not the 2 of L2, fp32, #33 or seed-2
NAMES = ("Table 1", "Table 2", "#33", "Renda et al. 2020")  # numbers that name things, not findings


# --- the committed run, read with pandas ---------------------------------------------------------


def seed_dirs(run_dir: Path) -> dict[int, Path]:
    """The study's runs by seed: ``run_dir`` for its own seed, ``run_dir/seed-<n>`` for the others."""
    own = json.loads((run_dir / "run.json").read_text())["seed"]
    seeds = json.loads((run_dir / "study.json").read_text())["seeds"]
    return {s: run_dir if s == own else run_dir / f"seed-{s}" for s in seeds}


def per_seed(run_dir: Path, name: str) -> pd.DataFrame:
    """``name`` of every seed's run, one frame with a ``seed`` column."""
    frames = []
    for seed, path in seed_dirs(run_dir).items():
        frame = (pd.DataFrame([json.loads((path / name).read_text())]) if name.endswith(".json")
                 else pd.read_csv(path / name))
        frames.append(frame.assign(seed=seed))
    return pd.concat(frames, ignore_index=True)


def load(run_dir: Path) -> dict[str, pd.DataFrame]:
    dense = per_seed(run_dir, "dense_metrics.json")
    results = per_seed(run_dir, "results.csv")
    dense_pct = results["seed"].map(dense.set_index("seed")["test_accuracy"] * 100)
    methods = per_seed(run_dir, "recovery_methods.csv")
    front = pd.read_csv(run_dir / "frontier.csv")
    scans = {s: pd.read_csv(run_dir / f"sensitivity_{s}.csv") for s in front["strategy"].unique()}
    return {"dense": dense, "results": results.assign(drop=dense_pct - results["acc_finetuned"]), "methods": methods,
            "latency": pd.read_csv(run_dir / "latency.csv"), "criteria": pd.read_csv(run_dir / "criteria.csv"),
            "iterative": pd.read_csv(run_dir / "iterative.csv"), "narrow": per_seed(run_dir, "narrow_dense.csv"),
            # the frontier at effective sizes: each point's masks made again from the dense model and scans
            "frontier": frontier_sizes(front, load_model(run_dir / "dense.pt")[0], scans)}


def mean_sd(values: pd.Series) -> str:
    """``"82.1 ± 0.3"``: mean and sample sd (ddof=1) over the seeds, to 0.1."""
    return f"{values.mean():.1f} ± {values.std():.1f}"


def one(values: pd.Series):
    """The single value all of ``values`` share (an assumption of a phrase, checked)."""
    assert values.nunique() == 1, f"expected one value, got {sorted(values.unique())}"
    return values.iloc[0]


# --- what the README must say --------------------------------------------------------------------


def expected_table(run: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The findings table: Table 2 and LR rewinding as mean ± sd over the seeds, one row per strategy."""
    results, methods = run["results"], run["methods"]
    epochs, method_epochs = one(results["finetune_epochs"]), one(methods["epochs"])
    columns = {"conv_weights_kept_pct": "% conv weights left", "acc_pruned": "after pruning (%)",
               "acc_recalibrated": "after BN recalibration (%)",
               "acc_finetuned": f"after fine-tuning, {epochs} epochs (%)", "drop": "drop from dense (points)"}
    strategies = list(dict.fromkeys(results["strategy"]))
    by_strategy = results.groupby("strategy")
    table = pd.DataFrame({label: [mean_sd(by_strategy.get_group(s)[column]) for s in strategies]
                          for column, label in columns.items()}, index=pd.Index(strategies, name="strategy"))
    rewinding = methods[methods["method"] == "LR rewinding"].groupby("strategy")["acc_finetuned"]
    table[f"LR rewinding, {method_epochs} epochs (%)"] = [mean_sd(rewinding.get_group(s)) for s in strategies]
    return table


def triple(frame: pd.DataFrame, column: str, strategies: list[str]) -> str:
    """``"77.3 / 71.4 / 70.2"``: ``column`` per strategy (mean over rows), in ``strategies``' order."""
    means = frame.groupby("strategy")[column].mean()
    return " / ".join(f"{means[s]:.1f}" for s in strategies)


def expected_phrases(run: dict[str, pd.DataFrame]) -> list[str]:
    """Every piece of the findings' sentences that holds a number, formatted from the run."""
    dense, results, methods = run["dense"], run["results"], run["methods"]
    strategies = list(dict.fromkeys(results["strategy"]))
    seeds = sorted(dense["seed"])
    identity = json.loads((RUN / "run.json").read_text())
    own = identity["seed"]  # the seed of latency.csv, criteria.csv, iterative.csv
    width = get_profile(identity["profile"]).width

    latency = run["latency"].set_index(["model", "batch_size"])
    batches = sorted(run["latency"]["batch_size"].unique())
    small, large = batches[0], batches[-1]
    masked = [m for m in run["latency"]["model"].unique() if m.endswith("(masked)")]
    speedups = [speed_verdict(latency.loc[("dense", b)], latency.loc[(m, b)])[0] for m in masked for b in batches]
    compacted = {b: speed_verdict(latency.loc[("dense", b)], latency.loc[("filter (compacted)", b)])[0] for b in batches}
    sizes = latency.xs(large, level="batch_size")
    dense_params, dense_macs = sizes.at["dense", "parameters"], sizes.at["dense", "multiply_adds"]

    criteria = run["criteria"]
    of = {c: criteria[criteria["criterion"] == c] for c in criteria["criterion"].unique()}
    random_seeds = of["random"].groupby("strategy")["seed"].nunique()

    iterative = run["iterative"]
    final = iterative[iterative["round"] == iterative["rounds"]]
    rounds = sorted(final["rounds"].unique())
    at = {r: final[final["rounds"] == r] for r in rounds}

    wide = methods.pivot_table(index=["strategy", "seed"], columns="method", values="acc_finetuned")
    rewinding_gain = wide["LR rewinding"] - wide["one-cycle (Table 2)"]
    paired_p = {s: paired_difference(wide.loc[s, "LR rewinding"].tolist(), wide.loc[s, "one-cycle (Table 2)"].tolist())["p"]
                for s in strategies}
    means = methods.groupby(["strategy", "method"])["acc_finetuned"].mean().unstack()
    distillation_gap = (means["distillation"] - means["one-cycle (Table 2)"]).abs().max()
    epochs = one(methods["epochs"])

    front = run["frontier"]
    tenth = 0.1  # the budget the sentence names; the profile must have it
    assert tenth in set(front["budget"])
    filters = front[front["strategy"] == "filter"]
    filter_at_tenth = filters[(filters["budget"] == tenth) & filters["allocation"].isin(["uniform", "guided"])][
        "conv_weights_effective_pct"]
    smallest = min(get_profile(identity["profile"]).budgets)
    narrow = narrow_table(run["narrow"], results)
    at_conv = narrow.xs("conv weights", level="matched").loc[strategies]
    at_macs = narrow.xs("multiply-adds", level="matched")
    kernel_global = front[(front["strategy"] == "kernel") & (front["allocation"] == "global")]
    collapsed = kernel_global[kernel_global["budget"].isin([tenth, smallest])]["acc_finetuned"]
    small_sizes = [100 * smallest, 100 * tenth]

    return [
        # the run
        f"the VGG at width {width:g}, {one(dense['parameters']):,} parameters, {one(dense['epochs'])} dense epochs",
        f"mean ± sd over seeds {', '.join(map(str, seeds[:-1]))} and {seeds[-1]} unless marked \"seed {own}\"",
        f"The dense model reaches {mean_sd(dense['test_accuracy'] * 100)}%",
        # what the masked count leaves out
        f"seed {own}'s has {sizes.at['filter (compacted)', 'parameters']:,} parameters, "
        f"{100 * sizes.at['filter (compacted)', 'parameters'] / dense_params:.1f}% of the dense model's against "
        f"{100 * sizes.at['filter (masked)', 'parameters'] / dense_params:.1f}% counted under its mask",
        f"computes {100 * sizes.at['filter (compacted)', 'multiply_adds'] / dense_macs:.0f}% of the dense "
        f"multiply-adds against {100 * sizes.at['filter (masked)', 'masked_multiply_adds'] / dense_macs:.0f}%",
        # real speed
        f"(seed {own}, `latency.csv`",
        f"the {len(masked)} masked models run at {min(speedups):.2f}x to {max(speedups):.2f}x the dense model's speed",
        f"runs {compacted[small]:.2f}x as fast at batch {small} and {compacted[large]:.2f}x at batch {large}",
        # criteria
        f"(seed {own}, `criteria.csv`",
        f"{one(criteria['finetune_epochs'])} fine-tuning epoch",
        f"L2 norm {triple(of['L2'], 'acc_finetuned', strategies)}%",
        f"L1 {triple(of['L1'], 'acc_finetuned', strategies)}%",
        f"Taylor importance {triple(of['Taylor'], 'acc_finetuned', strategies)}%",
        f"random {triple(of['random'], 'acc_finetuned', strategies)}% (mean of {one(random_seeds)} random masks)",
        # one shot vs iterative
        f"(seed {own}, `iterative.csv`",
        f"{one(iterative['rounds'] * iterative['finetune_epochs'])} fine-tuning epochs in all",
        *[f"in {r} round{'s' if r > 1 else ''} {triple(at[r], 'acc_after_round', strategies)}%" for r in rounds],
        # the frontier at effective sizes
        f"(seed {own}, `frontier.csv`",
        f"(seed {own}, `frontier.csv` at its points' effective sizes",
        f"at a budget of {100 * tenth:g}% of the conv weights the uniform and guided filter allocations keep "
        f"{one(filter_at_tenth.round(1)):.1f}% once compacted",
        # one global ranking
        f"{100 * smallest:g}% of the conv weights would empty",
        f"ends at chance ({one(collapsed.round(1)):.1f}%) at {100 * tenth:g}% and {100 * smallest:g}% after the "
        f"{one(front['finetune_epochs'])}-epoch fine-tune",
        f"at {small_sizes[0]:g}% and {small_sizes[1]:g}% effective size, keeps the most accuracy",
        # narrow networks
        f"trained for the {one(run['narrow']['epochs'])} epochs its pruned model saw",
        f"pruning lead by {' / '.join(f'{x:.1f}' for x in at_conv['pruned - narrow (points)'])} points (paired t-test "
        f"p = {' / '.join(f'{x:.3f}' for x in at_conv['p'])})",
        f"only fine-grained pruning's lead ({at_macs.at['fine-grained', 'pruned - narrow (points)']:.1f} points, "
        f"p = {at_macs.at['fine-grained', 'p']:.3f}) is beyond chance",
        # recovery
        f"`recovery_methods.csv`, {epochs} epochs each",
        f"the dense recipe's last {epochs} epochs",
        f"by {rewinding_gain.min():.1f} to {rewinding_gain.max():.1f} points",
        f"(paired t-test, {' / '.join(strategies)}: p = {' / '.join(f'{paired_p[s]:.3f}' for s in strategies)})",
        f"within {distillation_gap:.1f} points of one-cycle",
    ]


# --- the checker ---------------------------------------------------------------------------------


def findings_section(readme: str) -> str:
    """The text from the findings heading to the next ``## `` heading."""
    start = readme.index(HEADING + "\n")
    end = readme.find("\n## ", start + len(HEADING))
    return readme[start:end if end != -1 else len(readme)]


def table_lines(section: str) -> list[str]:
    return [line for line in section.splitlines() if line.startswith("|")]


def parse_table(section: str) -> pd.DataFrame:
    """The section's markdown table as strings, indexed by its first column."""
    lines = table_lines(section)
    if len(lines) < 3:
        return pd.DataFrame()
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    header, rows = cells[0], cells[2:]
    return pd.DataFrame([r[1:] for r in rows], columns=header[1:],
                        index=pd.Index([r[0] for r in rows], name=header[0]))


def number_spans(text: str) -> list[tuple[int, int]]:
    """Where the numbers of ``text`` are, names (:data:`NAMES`) left out."""
    for name in NAMES:
        text = text.replace(name, " " * len(name))
    return [m.span() for m in NUMBER.finditer(text)]


def mismatches(readme: str, run: dict[str, pd.DataFrame]) -> list[str]:
    """What the README's findings say that the run does not: table cells, missing phrases, and
    numbers that nothing checks. Empty when all agree."""
    section = findings_section(readme)
    problems = []
    shown, expected = parse_table(section), expected_table(run)
    if list(shown.columns) != list(expected.columns) or list(shown.index) != list(expected.index):
        problems.append(f"table: README has columns {list(shown.columns)} and rows {list(shown.index)}, "
                        f"the run gives {list(expected.columns)} and {list(expected.index)}")
    else:
        for row in expected.index:
            for column in expected.columns:
                if shown.at[row, column] != expected.at[row, column]:
                    problems.append(f"table {row!r}, {column!r}: README {shown.at[row, column]!r}, "
                                    f"run {expected.at[row, column]!r}")
    prose = " ".join(" ".join(line for line in section.splitlines() if not line.startswith("|")).split())
    checked = [False] * len(prose)
    for phrase in expected_phrases(run):
        if phrase not in prose:
            problems.append(f"not in the README's findings: {phrase!r}")
        for m in re.finditer(re.escape(phrase), prose):
            checked[m.start():m.end()] = [True] * (m.end() - m.start())
    for start, end in number_spans(prose):
        if not all(checked[start:end]):
            context = prose[max(0, start - 30):end + 30]
            problems.append(f"unchecked number {prose[start:end]!r} in ...{context}...")
    return problems


@pytest.fixture(scope="module")
def run() -> dict[str, pd.DataFrame]:
    return load(RUN)


def test_the_readme_findings_are_the_committed_runs_numbers(run):
    assert mismatches(README.read_text(), run) == []


def test_the_checker_fails_on_each_changed_number(run):
    """Every number of the findings (table cells included) is checked: changing any one digit fails."""
    readme = README.read_text()
    start = readme.index(HEADING)
    section = findings_section(readme)
    spans = number_spans(section)
    assert len(spans) > 50  # the table's cells and the sentences' numbers
    for first, end in spans:
        at = start + end - 1  # the number's last digit
        changed = readme[:at] + str((int(readme[at]) + 1) % 10) + readme[at + 1:]
        assert mismatches(changed, run), f"not checked: {section[first:end]!r} in {section[first - 40:end + 20]!r}"


def test_the_checker_reports_an_unchecked_number(run):
    readme = README.read_text()
    added = readme.replace(HEADING + "\n", HEADING + "\n\nPruning makes it 3.5x better.\n", 1)
    problems = mismatches(added, run)
    assert len(problems) == 1 and problems[0].startswith("unchecked number '3.5' in"), problems


def test_the_readme_claims_hold_on_the_committed_run(run):
    """The findings' words, asserted on the numbers, so a run that contradicts them fails."""
    results = run["results"].groupby("strategy")[["acc_pruned", "acc_recalibrated", "acc_finetuned"]].mean()
    # fine-grained keeps the most accuracy; chance level right after pruning, BatchNorm recalibration
    # gives part of it back, fine-tuning most of the rest
    assert results["acc_finetuned"].idxmax() == "fine-grained"
    assert run["results"]["acc_pruned"].max() < 12.0
    assert (results["acc_recalibrated"] > results["acc_pruned"]).all()
    assert (results["acc_finetuned"] > results["acc_recalibrated"]).all()
    # masked models no faster (within the rounds' spread); the compacted filter model faster beyond it
    latency = run["latency"].set_index(["model", "batch_size"])
    for model, batch in latency.index:
        if model != "dense":
            verdict = speed_verdict(latency.loc[("dense", batch)], latency.loc[(model, batch)])[1]
            assert verdict == ("faster" if model == "filter (compacted)" else "within spread"), (model, batch)
    masked = run["latency"][run["latency"]["model"].str.endswith("(masked)")]
    dense_macs = latency.loc[("dense", 1), "multiply_adds"]
    assert (masked["multiply_adds"] == dense_macs).all() and (masked["masked_multiply_adds"] < dense_macs).all()
    # magnitude (L2, L1) beats Taylor importance and random masks after fine-tuning
    acc = run["criteria"].groupby(["strategy", "criterion"])["acc_finetuned"].mean().unstack()
    assert (acc[["L2", "L1"]].min(axis=1) > acc[["Taylor", "random"]].max(axis=1)).all()
    # one shot beats iterative at equal epochs: fewer rounds, higher final accuracy
    final = run["iterative"].query("round == rounds").pivot(index="strategy", columns="rounds",
                                                            values="acc_after_round")
    assert final.apply(lambda r: r.is_monotonic_decreasing and r.is_unique, axis=1).all()
    # LR rewinding beats one-cycle on every seed and strategy; the constant rate is the worst on average
    wide = run["methods"].pivot_table(index=["strategy", "seed"], columns="method", values="acc_finetuned")
    assert (wide["LR rewinding"] > wide["one-cycle (Table 2)"]).all()
    # paired over the seeds, the gain is beyond chance (p < 0.05) for fine-grained and kernel, not for filter
    beyond = {s: paired_difference(wide.loc[s, "LR rewinding"].tolist(), wide.loc[s, "one-cycle (Table 2)"].tolist())["p"]
              < 0.05 for s in ("fine-grained", "kernel", "filter")}
    assert beyond == {"fine-grained": True, "kernel": True, "filter": False}, beyond
    means = wide.groupby("strategy").mean()
    assert (means.idxmax(axis=1) == "LR rewinding").all() and (means.idxmin(axis=1) == "constant rate").all()
    # one global magnitude ranking empties conv10 and conv11 of kernels and four filter layers at the smallest
    # budget; LAMP empties none (seed 0's dense model: the ranking reads no data)
    model, _ = load_model(RUN / "dense.pt")
    budget = min(get_profile(json.loads((RUN / "run.json").read_text())["profile"]).budgets)
    assert collapsing_layers(model, budget, "kernel") == ["conv10", "conv11"]
    assert len(collapsing_layers(model, budget, "filter")) == 4
    assert not any(collapsing_layers(model, budget, s, lamp=True) for s in ("fine-grained", "kernel", "filter"))
    # at equal effective size fine-grained keeps the most accuracy wherever all three strategies reach;
    # filter: guided beats uniform where both reach, but the uniform curve is above guided's smallest point
    front = run["frontier"]
    equal = at_equal_size(front, sorted(100 * front["budget"].unique()))
    best = equal.groupby(level="strategy").max()
    shared = best.columns[best.notna().all()]
    assert len(shared) >= 4 and (best[shared].idxmax() == "fine-grained").all(), best
    filters = front[front["strategy"] == "filter"]
    lowest = filters[filters["allocation"] == "guided"].nsmallest(1, "budget").iloc[0]
    uniform = at_equal_size(filters[filters["allocation"] == "uniform"], [lowest["conv_weights_effective_pct"]])
    assert uniform.iloc[0, 0] > lowest["acc_finetuned"]
    both = equal.loc["filter"].dropna(axis=1)
    assert (both.loc["guided"] > both.loc["uniform"]).all()  # 5, 10, 20: every size both curves reach
    others = front[front["strategy"] != "filter"]
    assert (others["conv_weights_kept_pct"] - others["conv_weights_effective_pct"]).max() < 0.5
    # global magnitude: kernel pruning at chance at 10% and 5%; LAMP the best allocation at 5% and 10% effective
    # size for kernel and filter pruning
    kernel_global = front[(front["strategy"] == "kernel") & (front["allocation"] == "global")].set_index("budget")
    assert (kernel_global.loc[[0.1, 0.05], "acc_finetuned"] <= 10.5).all()
    small = at_equal_size(front, [5.0, 10.0])
    for strategy in ("kernel", "filter"):
        assert (small.loc[strategy].idxmax() == "LAMP").all(), small.loc[strategy]
    # pruning beats the narrow network at equal conv weights for every strategy (paired, p < 0.05); at equal
    # multiply-adds only fine-grained pruning does
    narrow = narrow_table(run["narrow"], run["results"])
    assert narrow.xs("conv weights", level="matched")[PAIRED].all()
    assert (narrow.xs("conv weights", level="matched")["pruned - narrow (points)"] > 0).all()
    assert narrow.xs("multiply-adds", level="matched")[PAIRED].to_dict() == {
        "fine-grained": True, "kernel": False, "filter": False}
    # the data is the JPEG copy, as the README says
    assert run["dense"]["data"].str.startswith("CIFAR-10, JPEG copy").all()
