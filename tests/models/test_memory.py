"""The memory estimate of a training job, term by term against hand computation, and where a model's
shape comes from (preset, run, folder, well-known Hub id) without loading weights."""

from __future__ import annotations

import json
import types

import pytest

from engine.manifest import parse_text
from engine.models.memory import (
    CUDA_CONTEXT,
    KNOWN_SHAPES,
    ModelShape,
    estimate_memory,
    experiment_estimate,
    experiment_shape,
    parameter_count,
)
from support.fakes import write_run

REFERENCE = {  # engine-spec: trainable parameters of bert-base, tied weights once
    "base": 109_482_240,
    "pretraining": 110_106_428,
    "mlm": 109_514_298,
    "classification": 109_483_778,
    "qa": 108_893_186,
}
MICRO = ModelShape(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256, vocab_size=1000)


def _exp(extra: str = "", task: str = "classify", model: str = "bert-micro", name: str = "e", path=None):
    data = {
        "classify": 'dataset = "embedded:sst2"\ntext_column = "sentence"',
        "pretrain": 'dataset = "embedded:wikitext"',
    }
    text = f'[[experiment]]\nname = "{name}"\ntask = "{task}"\nmodel = "{model}"\n{data.get(task, "")}\n{extra}\n'
    m = parse_text(text, path or "/tmp/m.toml")
    return m, m.experiments[0]


@pytest.mark.parametrize("head", list(REFERENCE))
def test_parameter_count_matches_the_reference_counts_of_bert_base(head):
    assert parameter_count(ModelShape(), head) == REFERENCE[head]


def test_parameter_count_matches_the_model_built_on_the_meta_device():
    from engine.models.params import rows_for
    from engine.models.presets import preset_config

    config = preset_config("bert-micro", vocab_size=1000)
    for head in ("pretraining", "classification", "qa"):
        assert parameter_count(MICRO, head) == sum(r.count for r in rows_for(config, head)), head


def test_cpu_fp32_classification_term_by_term():
    """bert-micro, 2 labels, batch 4 x 32 tokens, fp32 on a CPU, computed by hand."""
    _, exp = _exp("batch_size = 4\nmax_seq_length = 32")
    est = estimate_memory(exp, MICRO, on_gpu=False)
    # embeddings (1000 + 512 + 2) * 64 + 128 = 97,024; a layer 4*64^2 + 2*64*256 + 9*64 + 256 = 49,984;
    # pooler 64^2 + 64 = 4,160; classifier 64*2 + 2 = 130
    p = 97_024 + 2 * 49_984 + 4_160 + 130
    assert est.parameters == p == 201_282
    assert (est.weights, est.gradients, est.optimizer) == (4 * p, 4 * p, 8 * p)
    assert est.autocast_copies == est.ddp_buckets == est.head == est.overhead == 0
    sbh = 32 * 4 * 64
    per_layer = sbh * (16 * 4 + 2) + 2 * 32 * 32 * 4 * (2 * 4 + 1)  # stored tensors + attention probabilities
    transient = max(2 * 2 * 32 * 32 * 4 * 4, 8 * sbh * 4)  # one layer's backward buffers: the MLP's here
    assert est.activations == 2 * per_layer + 5 * sbh + 4 * 4 * 32 * 32 + transient == 1_548_288
    assert est.allocated == est.total == 16 * p + 1_548_288
    assert est.precision == "fp32" and est.device == "cpu"


def test_gpu_bf16_pretraining_adds_autocast_copies_logits_context_and_drops_the_attention_matrix():
    _, exp = _exp("batch_size = 8\nmax_seq_length = 32", task="pretrain")
    est = estimate_memory(exp, MICRO, on_gpu=True)
    p = parameter_count(MICRO, "pretraining")
    assert est.precision == "bf16" and est.autocast_copies == 2 * p
    sbh = 32 * 8 * 64
    per_layer = sbh * (16 * 2 + 2 + 4)  # fused attention: no s^2 term; LayerNorm inputs stay fp32 (+4)
    assert est.activations == 2 * per_layer + 5 * sbh + 4 * 8 * 32 * 32 + 8 * sbh * 2
    m = round(0.15 * 32)  # masked positions per sequence: logits only there
    assert est.head == 8 * m * 1000 * (2 + 4 + 4 + 4) + 8 * m * 64 * (3 * 2 + 4)
    allocated = 18 * p + est.activations + est.head
    assert est.allocated == allocated
    assert est.total == pytest.approx(allocated * 1.1 + CUDA_CONTEXT)


def test_precision_batch_accumulation_and_ddp_change_what_they_should():
    _, base = _exp("batch_size = 8\nmax_seq_length = 64")
    one = estimate_memory(base, MICRO, on_gpu=True)
    _, fp32 = _exp('batch_size = 8\nmax_seq_length = 64\nprecision = "fp32"')
    assert estimate_memory(fp32, MICRO, on_gpu=True).activations > 1.5 * one.activations
    _, double = _exp("batch_size = 16\nmax_seq_length = 64")
    assert estimate_memory(double, MICRO, on_gpu=True).activations == pytest.approx(2 * one.activations, rel=0.01)
    _, accum = _exp("batch_size = 8\nmax_seq_length = 64\ngradient_accumulation_steps = 8")
    assert estimate_memory(accum, MICRO, on_gpu=True).total == one.total  # activations are per micro-batch
    _, ddp = _exp('batch_size = 8\nmax_seq_length = 64\nlauncher = "torchrun"\nnproc_per_node = 2')
    assert estimate_memory(ddp, MICRO, on_gpu=True).ddp_buckets == 4 * one.parameters


def test_the_estimate_in_a_line_and_in_config_json():
    _, exp = _exp("batch_size = 4\nmax_seq_length = 32")
    est = estimate_memory(exp, MICRO, on_gpu=True)
    assert est.line() == (
        "517 MiB per GPU (bf16: weights 0.8 MiB, gradients 0.8 MiB, AdamW 1.5 MiB, autocast copies 0.4 MiB, "
        "activations 0.8 MiB, CUDA context + slack 512 MiB)"
    )
    _, big = _exp("batch_size = 64\nmax_seq_length = 512", task="pretrain")
    assert estimate_memory(big, ModelShape(), on_gpu=True).line().startswith("17.")  # GiB from 1 GiB on
    d = est.to_dict()
    assert d["total_gib"] == round(est.total / 2**30, 3) and d["parameters"] == est.parameters
    assert d["device"] == "cuda" and "CUDA_context_and_slack_gib" in d


def test_model_shapes_come_from_presets_runs_folders_and_known_hub_ids(tmp_path):
    text = f"""
[settings]
runs_dir = "{tmp_path / "runs"}"

[[experiment]]
name = "pre"
task = "pretrain"
model = "bert-tiny"
dataset = "embedded:wikitext"
vocab_size = 3000

[[experiment]]
name = "ft"
task = "classify"
model = "run:pre"
dataset = "embedded:sst2"
text_column = "sentence"

[[experiment]]
name = "base"
task = "classify"
model = "bert-base"
dataset = "embedded:sst2"
text_column = "sentence"

[[experiment]]
name = "folder"
task = "qa"
model = "{tmp_path / "model"}"
dataset = "embedded:squad_v2"

[[experiment]]
name = "hub"
task = "qa"
model = "google-bert/bert-large-cased"
dataset = "embedded:squad_v2"

[[experiment]]
name = "unknown"
task = "qa"
model = "someone/some-model"
dataset = "embedded:squad_v2"
"""
    (tmp_path / "model").mkdir()
    shape = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, vocab_size=500)
    (tmp_path / "model" / "config.json").write_text(json.dumps(shape | {"max_position_embeddings": 128}))
    m = parse_text(text, tmp_path / "m.toml")
    from engine.store.runs import RunStore

    store = RunStore(tmp_path / "runs")
    tiny = experiment_shape(m, m.get("pre"), store)[0]
    assert tiny == ModelShape(
        hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512, vocab_size=3000
    )  # the preset with its trained tokenizer's vocabulary
    assert experiment_shape(m, m.get("ft"), store)[0] == tiny  # no run yet: the dependency's own shape
    assert experiment_shape(m, m.get("base"), store)[0] == ModelShape()  # bert-base keeps its 30,522
    assert experiment_shape(m, m.get("folder"), store)[0] == ModelShape(**shape, max_position_embeddings=128)
    assert experiment_shape(m, m.get("hub"), store)[0] == KNOWN_SHAPES["bert-large-cased"]
    assert experiment_shape(m, m.get("unknown"), store) == (
        None,
        "someone/some-model: no local config.json (mirror or cache) to read its size from",
    )
    # a finished run of the dependency: its final model's config wins (here a grown vocabulary)
    run = write_run(tmp_path / "runs", "pre", "20260101-100000-000000-aaaa")
    (run.path / "model").mkdir()
    grown = {**tiny.__dict__, "vocab_size": 3100}
    (run.path / "model" / "config.json").write_text(json.dumps(grown))
    assert experiment_shape(m, m.get("ft"), store)[0] == ModelShape(**grown)
    assert experiment_estimate(m, m.get("unknown"), True, store)[0] is None
    params = parse_text('[[experiment]]\nname = "p"\ntask = "inspect"\nmodel = "bert-tiny"\n', tmp_path / "p.toml")
    assert experiment_estimate(params, params.experiments[0], True) == (None, "inspect does not train")


def test_a_job_records_its_estimate_in_config_json_and_its_log(tmp_path):
    from engine.job.runner import _record_memory_estimate
    from engine.store.runs import RunStore

    m, exp = _exp('batch_size = 4\nmax_seq_length = 32\ndevice = "cpu"', path=tmp_path / "m.toml")
    store = RunStore(tmp_path / "runs")
    run = store.create(exp.name, exp.to_dict())
    logged: list[str] = []
    ctx = types.SimpleNamespace(exp=exp, manifest=m, run=run, store=store, log=lambda msg, *a: logged.append(msg))
    _record_memory_estimate(ctx)  # type: ignore[arg-type]
    est = experiment_estimate(m, exp, False, store)[0]
    assert est is not None
    assert run.config()["memory_estimate"] == est.to_dict()
    assert run.config()["batch_size"] == 4  # the rest of the config stays
    assert logged == [f"memory estimate: {est.line()}"]
