"""The precision probe: choice, cache per machine, damaged or foreign cache files, and the switch."""

import json

import pytest
import torch

from pruning_utils import cpu_probe, latency
from pruning_utils.cpu_probe import MARGIN, choose, probe_key, training_precision


class FakeTimer:
    """Step times per precision, counting the calls (a probe must not run when the cache answers)."""

    def __init__(self, fp32: float, bf16: float):
        self.seconds = {"fp32": fp32, "bf16": bf16}
        self.calls = 0

    def __call__(self, precision, width, batch_size):
        self.calls += 1
        return [self.seconds[precision]] * 3


@pytest.fixture(autouse=True)
def bf16_cpu(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.delenv(cpu_probe.PROBE_ENV_VAR, raising=False)


def test_choice_keeps_bf16_unless_fp32_is_clearly_faster():
    assert choose({"fp32": 0.2, "bf16": 0.1}) == "bf16"
    assert choose({"fp32": 0.1 * (1 - MARGIN) * 0.99, "bf16": 0.1}) == "fp32"
    assert choose({"fp32": 0.1 * (1 - MARGIN) * 1.01, "bf16": 0.1}) == "bf16"  # within the noise margin


def test_probe_is_cached_per_machine_and_model(tmp_path):
    cache = tmp_path / "probe.json"
    fast_fp32 = FakeTimer(fp32=0.05, bf16=0.1)
    assert training_precision(0.25, 256, cache, measure=fast_fp32, log=lambda m: None) == "fp32"
    assert fast_fp32.calls == 4  # two interleaved rounds of both precisions
    stored = json.loads(cache.read_text())["entries"]
    assert stored[0]["key"] == probe_key(0.25, 256) and stored[0]["median_step_seconds"] == {"fp32": 0.05, "bf16": 0.1}
    assert training_precision(0.25, 256, cache, measure=FakeTimer(1, 1), log=lambda m: None) == "fp32"  # cached
    other = FakeTimer(fp32=0.2, bf16=0.1)
    assert training_precision(1.0, 256, cache, measure=other, log=lambda m: None) == "bf16"  # another width: probed
    assert other.calls == 4 and len(json.loads(cache.read_text())["entries"]) == 2


@pytest.mark.parametrize("content", ["{not json", '{"entries": 3}', '["a"]', '{"entries": [{"key": 1}]}'])
def test_a_damaged_or_foreign_cache_is_probed_over(tmp_path, content):
    cache = tmp_path / "probe.json"
    cache.write_text(content)
    timer = FakeTimer(fp32=0.2, bf16=0.1)
    assert training_precision(0.25, 256, cache, measure=timer, log=lambda m: None) == "bf16" and timer.calls == 4
    assert json.loads(cache.read_text())["entries"][-1]["key"] == probe_key(0.25, 256)


def test_another_cpu_gets_its_own_probe(tmp_path, monkeypatch):
    cache = tmp_path / "probe.json"
    training_precision(0.25, 256, cache, measure=FakeTimer(fp32=0.05, bf16=0.1), log=lambda m: None)
    monkeypatch.setattr(latency, "cpu_model", lambda: "Another CPU")
    timer = FakeTimer(fp32=0.2, bf16=0.1)
    assert training_precision(0.25, 256, cache, measure=timer, log=lambda m: None) == "bf16" and timer.calls == 4


def test_without_bf16_or_with_the_probe_off_nothing_is_measured(tmp_path, monkeypatch):
    timer = FakeTimer(fp32=0.05, bf16=0.1)
    monkeypatch.setenv(cpu_probe.PROBE_ENV_VAR, "0")
    assert training_precision(0.25, 256, tmp_path / "p.json", measure=timer) == "bf16"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert training_precision(0.25, 256, tmp_path / "p.json", measure=timer) == "fp32"
    assert timer.calls == 0 and not (tmp_path / "p.json").exists()


def test_real_step_timer_runs_both_precisions():
    for precision in ("fp32", "bf16"):
        times = cpu_probe.step_seconds(precision, 0.0625, 8, steps=2)
        assert len(times) == 2 and all(t > 0 for t in times)


def test_a_run_keeps_the_precision_it_was_made_with(tmp_path, monkeypatch):
    from pruning_utils import runs

    answers = iter(["fp32", "bf16", "bf16"])
    monkeypatch.setattr(runs, "training_precision", lambda *a, **k: next(answers))
    opened = runs.open_run("smoke", tmp_path / "run", progress=False, precision="auto")
    assert opened.precision == "fp32"  # the probe's answer when the run was made ...
    assert json.loads((tmp_path / "run" / "run.json").read_text()) == {"profile": "smoke", "seed": 0,
                                                                        "precision": "fp32"}
    again = runs.open_run("smoke", tmp_path / "run", progress=False, precision="auto")
    assert again.precision == "fp32"  # ... is kept, whatever the probe says now
    explicit = runs.open_run("smoke", tmp_path / "run", progress=False, precision="bf16")
    assert explicit.precision == "bf16"  # an explicit precision wins (and enters the keys)
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "run.json").write_text('{"profile": "smoke", "seed": 0}')  # made before runs recorded precision
    assert runs.open_run("smoke", legacy, progress=False, precision="auto").precision == "bf16"
    assert json.loads((legacy / "run.json").read_text())["precision"] == "bf16"
    assert runs.open_run("smoke", tmp_path / "fixed", progress=False).precision == "fp32"  # smoke: fp32, no probe
    assert "precision" not in json.loads((tmp_path / "fixed" / "run.json").read_text())
    unrecorded = tmp_path / "unrecorded"  # made on a GPU, where run.json records no CPU precision
    unrecorded.mkdir()
    (unrecorded / "run.json").write_text('{"profile": "smoke", "seed": 0}')
    monkeypatch.setattr(runs, "training_precision", lambda *a, **k: pytest.fail("a read-only run probed"))
    runs.open_run("smoke", unrecorded, progress=False, precision="auto", compute=False)
    assert (unrecorded / "run.json").read_text() == '{"profile": "smoke", "seed": 0}'  # and wrote nothing


class FakeEvalTimer:
    """Seconds per image per batch size, counting the calls."""

    def __init__(self, seconds: dict[int, float]):
        self.seconds, self.calls = seconds, 0

    def __call__(self, batch_size, width, precision):
        self.calls += 1
        return [self.seconds[batch_size]] * 3


def test_evaluation_batch_keeps_the_default_unless_another_is_clearly_faster(tmp_path):
    cache = tmp_path / "probe.json"
    assert cpu_probe.choose_batch({250: 1.0, 1000: 1.0 * (1 - MARGIN) * 1.01}, 1000) == 1000  # within the margin
    assert cpu_probe.choose_batch({250: 0.5, 500: 0.6, 1000: 1.0}, 1000) == 250
    timer = FakeEvalTimer({250: 0.5, 500: 0.7, 1000: 1.0})
    pick = cpu_probe.evaluation_batch_size
    assert pick(0.25, "bf16", 1000, (250, 500), cache, measure=timer, log=lambda m: None) == 250
    assert timer.calls == 6  # two interleaved rounds of three batches
    entry = json.loads(cache.read_text())["entries"][0]
    assert entry["key"] == cpu_probe.eval_probe_key(0.25, "bf16", [250, 500, 1000]) and entry["eval_batch_size"] == 250
    assert pick(0.25, "bf16", 1000, (250, 500), cache, measure=FakeEvalTimer({}), log=lambda m: None) == 250  # cached
    slow_small = FakeEvalTimer({250: 2.0, 500: 1.5, 1000: 1.0})
    assert pick(0.25, "fp32", 1000, (250, 500), cache, measure=slow_small, log=lambda m: None) == 1000  # other key
    assert training_precision(0.25, 256, cache, measure=FakeTimer(0.2, 0.1), log=lambda m: None) == "bf16"
    assert len(json.loads(cache.read_text())["entries"]) == 3  # both probes share the file, apart
    assert pick(0.25, "bf16", 1000, (), cache, measure=FakeEvalTimer({})) == 1000  # no candidates: no probe


def test_real_evaluation_timer_times_per_image():
    times = cpu_probe.eval_seconds(500, 0.0625, "fp32", rounds=1)
    assert len(times) == 1 and 0 < times[0] < 0.01


def test_a_run_keeps_the_evaluation_batch_it_was_made_with(tmp_path, monkeypatch):
    from pruning_utils import runs

    answers = iter([250, 500])
    monkeypatch.setattr(runs, "evaluation_batch_size", lambda *a, **k: next(answers))
    wanted = {"precision": "fp32", "eval_batch_candidates": (250,)}
    made = runs.open_run("smoke", tmp_path / "run", progress=False, **wanted)
    assert made.profile.eval_batch_size == 250 and made.settings("eval_batch_size") == {"eval_batch_size": 250}
    assert json.loads((tmp_path / "run" / "run.json").read_text())["eval_batch_size"] == 250
    assert runs.open_run("smoke", tmp_path / "run", progress=False, **wanted).profile.eval_batch_size == 250  # kept
    explicit = runs.open_run("smoke", tmp_path / "run", progress=False, eval_batch_size=100, **wanted)
    assert explicit.profile.eval_batch_size == 100  # an explicit batch wins (and enters the keys)
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "run.json").write_text('{"profile": "smoke", "seed": 0}')  # made before runs recorded the batch
    assert runs.open_run("smoke", legacy, progress=False, **wanted).profile.eval_batch_size == 500  # the profile's
    assert json.loads((legacy / "run.json").read_text())["eval_batch_size"] == 500
    assert runs.open_run("smoke", tmp_path / "plain", progress=False).profile.eval_batch_size == 500  # no candidates
    assert "eval_batch_size" not in json.loads((tmp_path / "plain" / "run.json").read_text())
    assert next(answers) == 500  # the probe was asked once only, for the new run
    with pytest.raises(ValueError, match="eval_batch_candidates"):
        runs.open_run("smoke", tmp_path / "bad", progress=False, eval_batch_candidates=(0,))
