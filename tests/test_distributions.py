"""The histograms notebooks 04 and 05 are drawn from, against numpy's own, and the figures drawn from them."""

import json

import numpy as np
import pytest
import torch

from pruning_utils import plots
from pruning_utils.artifacts import canonical
from pruning_utils.distributions import by_model, histogram_edges, histograms


def _tensors(seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(8, 4, 3, 3, generator=g)
    w[w.abs() < 0.5] = 0  # pruned weights: left out
    return {"conv0": w, "conv1": torch.zeros(5), "conv2": torch.tensor([0.0, 2.5, 0.0])}


def test_histograms_are_numpys_histogram_of_the_non_zero_values():
    records = histograms({"b model": _tensors(0), "a model": _tensors(1)}, bins=7)
    assert [(r["model"], r["layer"]) for r in records] == [(m, layer) for m in ("b model", "a model")
                                                           for layer in ("conv0", "conv1", "conv2")]
    for record in records:
        values = _tensors(0 if record["model"] == "b model" else 1)[record["layer"]].flatten().double().numpy()
        values = values[values != 0]
        assert record["non_zero"] == len(values) == sum(record["counts"])
        if len(values):
            counts, edges = np.histogram(values, bins=7)  # the oracle
            assert record["counts"] == counts.tolist()
            np.testing.assert_array_equal(histogram_edges(record), edges)
        else:
            assert record["counts"] == [] and record["lo"] is None and len(histogram_edges(record)) == 0
    one_value = by_model(records)["b model"]["conv2"]  # numpy widens a single value's range by 0.5 each side
    assert (one_value["lo"], one_value["hi"], sum(one_value["counts"])) == (2.0, 3.0, 1)


def test_stored_histograms_keep_their_order_and_their_edges_exactly():
    records = histograms({"dense": _tensors(0), "filter pruned": _tensors(2)})
    stored = json.loads(json.dumps(canonical({"histograms": records})))["histograms"]  # as Run.save_json writes
    assert stored == records
    hists = by_model(stored)
    assert list(hists) == ["dense", "filter pruned"] and list(hists["dense"]) == ["conv0", "conv1", "conv2"]
    np.testing.assert_array_equal(histogram_edges(hists["dense"]["conv0"]),
                                  np.histogram(_tensors(0)["conv0"][_tensors(0)["conv0"] != 0].double(), 60)[1])


@pytest.mark.parametrize("bins", [0, -3])
def test_histograms_refuse_no_bins(bins):
    with pytest.raises(ValueError, match="bins must be at least 1"):
        histograms({"dense": _tensors()}, bins=bins)


def test_figures_drawn_from_histograms():
    hists = by_model(histograms({"dense": _tensors(0), "pruned": _tensors(3)}, bins=10))
    fig = plots.layer_histograms(hists["dense"], title="t")
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == [f"{layer} ({h['non_zero']:,} non-zero)" for layer, h in hists["dense"].items()]
    fig = plots.overlay_histograms(hists, title="t")
    for patch in fig.axes[0].patches:  # each model's density integrates to 1
        values, edges, _ = patch.get_data()
        assert float(np.sum(values * np.diff(edges))) == pytest.approx(1.0)
    assert len(fig.axes[0].patches) == 2 and not fig.axes[1].patches  # an empty layer draws nothing
