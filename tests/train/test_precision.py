"""CPU precision and optimizer levers: fused AdamW everywhere, bf16 autocast as a CPU opt-in."""

import pytest
import torch
from support.micro import micro_text

from engine.errors import JobError
from engine.job.runner import run_experiment
from engine.manifest import parse_text
from engine.train import loop as train_loop
from engine.train.loop import autocast_dtype, make_optimizer

CPU = torch.device("cpu")


def test_cpu_auto_stays_fp32_and_bf16_is_an_opt_in(monkeypatch):
    monkeypatch.setattr(train_loop, "cpu_bf16_native", lambda: True)
    assert autocast_dtype("auto", CPU) is None
    assert autocast_dtype("fp32", CPU) is None
    assert autocast_dtype("bf16", CPU) is torch.bfloat16


def test_cpu_bf16_refused_where_it_would_be_emulated(monkeypatch):
    monkeypatch.setattr(train_loop, "cpu_bf16_native", lambda: False)
    with pytest.raises(JobError) as e:
        autocast_dtype("bf16", CPU)
    assert "AVX512-BF16/AMX" in e.value.reason and "precision" in e.value.hint
    with pytest.raises(JobError) as e:
        autocast_dtype("fp16", CPU)
    assert "GPU precision" in e.value.reason


def test_fused_adamw_on_cpu_matches_the_reference_update():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8))
    ref = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8))
    ref.load_state_dict(model.state_dict())

    class Exp:
        weight_decay, learning_rate = 0.01, 1e-3

    opt = make_optimizer(model, Exp, CPU)
    assert opt.defaults["fused"] is True
    # the reference: the same parameter groups with the single-tensor implementation
    decay = [p for n, p in ref.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in ref.named_parameters() if p.ndim < 2]
    ref_opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-3, foreach=False
    )
    x = torch.randn(4, 8)
    for _ in range(3):
        for m, o in ((model, opt), (ref, ref_opt)):
            o.zero_grad()
            m(x).pow(2).sum().backward()
            o.step()
    for a, b in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not train_loop.cpu_bf16_native(), reason="this CPU has no native bf16 (AVX512-BF16/AMX)")
def test_bf16_pretraining_on_cpu_learns(tmp_path):
    text = micro_text(tmp_path / "runs", precision="bf16")
    run = run_experiment(parse_text(text, tmp_path / "m.toml"), "pre")
    assert run.status()["status"] == "finished", run.status()
    assert any("autocast torch.bfloat16" in getattr(e, "message", "") for e in run.events())
    ppl = run.read_table("epochs").column("mlm_perplexity")
    assert ppl[-1] < 0.7 * ppl[0]
