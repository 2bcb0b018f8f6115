"""The latency table: one row per (model, batch size), sizes that tell masked from compacted models."""

import copy

import pytest
import torch

from pruning_utils.compact import compact
from pruning_utils.counting import count_multiply_adds_masked, count_remaining_parameters
from pruning_utils.latency import LATENCY_COLUMNS, cpu_model, latency_table
from pruning_utils.masks import prune_model
from pruning_utils.model import CONV_NAMES, conv_layers, count_multiply_adds


def test_latency_table_columns_and_sizes(trained_tiny):
    masked = prune_model(copy.deepcopy(trained_tiny), dict.fromkeys(CONV_NAMES, 0.5), "filter")
    small = compact(masked)
    models = {"dense": trained_tiny, "filter masked": masked, "filter compact": small}
    threads = torch.get_num_threads()
    table = latency_table(models, batch_sizes=(1, 8), repeats=2, warmup=1, threads=1)
    assert list(table.columns) == LATENCY_COLUMNS
    assert table[["model", "batch_size"]].values.tolist() == [[m, b] for m in models for b in (1, 8)]
    assert table[["median_ms", "images_per_s", "parameters", "multiply_adds", "file_size_bytes"]].gt(0).all().all()
    assert (table["images_per_s"] * table["median_ms"] / 1000 - table["batch_size"]).abs().max() < 1e-9
    by_model = table.groupby("model").first()
    for name, model in models.items():
        assert by_model.at[name, "parameters"] == count_remaining_parameters(model)["total"]
        assert by_model.at[name, "multiply_adds"] == count_multiply_adds(model)
        assert by_model.at[name, "masked_multiply_adds"] == count_multiply_adds_masked(model)["total"]
    assert by_model.at["filter compact", "parameters"] < by_model.at["filter masked", "parameters"]
    assert by_model.at["filter masked", "parameters"] < by_model.at["dense", "parameters"]
    assert by_model.at["filter compact", "file_size_bytes"] < by_model.at["filter masked", "file_size_bytes"]
    assert by_model.at["filter masked", "multiply_adds"] == by_model.at["dense", "multiply_adds"]
    assert by_model.at["filter masked", "masked_multiply_adds"] < by_model.at["dense", "masked_multiply_adds"]
    assert by_model.at["filter compact", "multiply_adds"] < by_model.at["filter masked", "multiply_adds"]
    assert torch.get_num_threads() == threads  # restored
    assert hasattr(conv_layers(masked)["conv0"], "weight_mask")  # the table works on copies


def test_latency_table_rejects_bad_arguments(trained_tiny):
    with pytest.raises(ValueError, match="batch_sizes .*0"):
        latency_table({"dense": trained_tiny}, batch_sizes=(0,))
    with pytest.raises(ValueError, match="batch_sizes"):
        latency_table({"dense": trained_tiny}, batch_sizes=())
    with pytest.raises(ValueError, match="repeats .*0"):
        latency_table({"dense": trained_tiny}, repeats=0)
    with pytest.raises(ValueError, match="warmup .*-1"):
        latency_table({"dense": trained_tiny}, warmup=-1)
    with pytest.raises(ValueError, match="threads .*0"):
        latency_table({"dense": trained_tiny}, threads=0)
    with pytest.raises(ValueError, match="at least one model"):
        latency_table({})


def test_cpu_model_names_the_processor():
    name = cpu_model()
    assert isinstance(name, str) and name.strip() == name and name
    try:
        listed = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")]
    except OSError:
        listed = []
    if listed:
        assert name == listed[0]
