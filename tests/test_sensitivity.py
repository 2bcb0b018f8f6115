"""The fast sensitivity scan equals the naive one; the original's sparsity rule."""

import pandas as pd
import pytest
import torch

from pruning_utils.criteria import STRATEGIES
from pruning_utils.sensitivity import choose_sparsities, scan_sensitivity, scan_sensitivity_naive


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_fast_scan_equals_naive_scan_in_fp32(trained_tiny, synthetic, strategy):
    x, y = synthetic.val_x, synthetic.val_y
    before = {k: v.clone() for k, v in trained_tiny.state_dict().items()}
    kwargs = dict(layers=("conv0", "conv5", "conv11"), batch_size=64, precision="fp32", progress=False)
    fast = scan_sensitivity(trained_tiny, x, y, strategy, **kwargs)
    naive = scan_sensitivity_naive(trained_tiny, x, y, strategy, **kwargs)
    pd.testing.assert_frame_equal(fast, naive)
    assert list(fast.columns) == ["strategy", "layer", "sparsity", "accuracy"]
    assert len(fast) == 3 * 10
    after = trained_tiny.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the model is left untouched
    # pruning matters: heavy pruning of some layer costs accuracy
    assert fast["accuracy"].min() < fast["accuracy"].max() - 0.1


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_fast_scan_equals_naive_scan_in_bf16_autocast(trained_tiny, synthetic, strategy):
    """Autocast caches low-precision weight copies while its context is open; masks swapped
    into the live model must still take effect at every sparsity. bf16 autocast works on every
    CPU (emulated, 20-60x slower, where the CPU lacks native bf16), so this runs everywhere, on
    100 images (two batches, so the cache is reused across batches too)."""
    kwargs = dict(layers=("conv1", "conv7"), batch_size=50, precision="bf16", progress=False)
    x, y = synthetic.val_x[:100], synthetic.val_y[:100]
    fast = scan_sensitivity(trained_tiny, x, y, strategy, **kwargs)
    naive = scan_sensitivity_naive(trained_tiny, x, y, strategy, **kwargs)
    pd.testing.assert_frame_equal(fast, naive)
    assert fast.groupby("layer")["accuracy"].nunique().min() > 2  # accuracy moves with sparsity


def test_original_filter_behaviour_scan_also_matches(trained_tiny, synthetic):
    kwargs = dict(layers=("conv2",), batch_size=100, precision="fp32", progress=False,
                  remove_filter_outputs=False)
    fast = scan_sensitivity(trained_tiny, synthetic.val_x, synthetic.val_y, "filter", **kwargs)
    naive = scan_sensitivity_naive(trained_tiny, synthetic.val_x, synthetic.val_y, "filter", **kwargs)
    pd.testing.assert_frame_equal(fast, naive)


def test_scan_rejects_bad_arguments(trained_tiny, synthetic):
    with pytest.raises(ValueError, match="strategy"):
        scan_sensitivity(trained_tiny, synthetic.val_x, synthetic.val_y, "channel")
    with pytest.raises(KeyError, match="conv0"):
        scan_sensitivity(trained_tiny, synthetic.val_x, synthetic.val_y, "filter", layers=("fc1",))
    with pytest.raises(ValueError, match="sparsity"):
        scan_sensitivity(trained_tiny, synthetic.val_x, synthetic.val_y, "filter", sparsities=(0.5, 1.0))


def test_choose_sparsities_is_the_largest_before_the_first_dip():
    rows = []
    for s, a in zip([0.0, 0.1, 0.2, 0.3, 0.4], [0.9, 0.8, 0.45, 0.7, 0.2]):
        rows.append(("filter", "conv0", s, a))  # dips at 0.2: 0.1, even though 0.3 recovers
    for s, a in zip([0.0, 0.1, 0.2], [0.4, 0.9, 0.9]):
        rows.append(("filter", "conv1", s, a))  # below from the start: 0.0
    for s, a in zip([0.0, 0.1, 0.2], [0.9, 0.9, 0.9]):
        rows.append(("filter", "conv2", s, a))  # never dips: the largest scanned
    scan = pd.DataFrame(rows, columns=["strategy", "layer", "sparsity", "accuracy"])
    assert choose_sparsities(scan, 0.5) == {"conv0": 0.1, "conv1": 0.0, "conv2": 0.2}
    with pytest.raises(ValueError, match="threshold"):
        choose_sparsities(scan, 50)


def test_choose_sparsities_refuses_an_empty_or_incomplete_scan():
    with pytest.raises(ValueError, match="a scan needs rows"):
        choose_sparsities(pd.DataFrame(columns=["strategy", "layer", "sparsity", "accuracy"]), 0.5)
    with pytest.raises(ValueError, match="a scan needs rows"):
        choose_sparsities(pd.DataFrame({"layer": ["conv0"], "sparsity": [0.0]}), 0.5)
