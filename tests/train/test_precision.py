"""CPU precision and optimizer levers: fused AdamW everywhere, bf16 autocast as a CPU opt-in."""

import pytest
import torch

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
def test_bf16_pretraining_on_cpu_beats_word_frequencies(tmp_path):
    """bf16 autocast on the CPU learns for real: two epochs of the demo's pretraining settings (~320 steps)
    end below the add-one unigram perplexity of the run's own training split and vocabulary (~370 against
    ~415 when measured) and above the most frequent token's MLM accuracy, both computed here."""
    from support.baselines import run_baselines
    from support.manifests import PRETRAIN, experiment, manifest_text

    demo_like = dict(model="bert-tiny", vocab_size=4000, batch_size=16, max_seq_length=64, learning_rate=2e-3)
    pre = experiment(
        PRETRAIN,
        **demo_like,
        warmup=0.1,
        epochs=2,
        max_train_samples=None,
        max_eval_samples=256,
        logging_steps=50,
        seed=42,
        precision="bf16",
    )
    run = run_experiment(parse_text(manifest_text(tmp_path / "runs", pre), tmp_path / "m.toml"), "pre")
    assert run.status()["status"] == "finished", run.status()
    assert any("autocast torch.bfloat16" in getattr(e, "message", "") for e in run.events())
    table = run.read_table("epochs")
    final = {c: table.column(c)[-1] for c in ("mlm_perplexity", "mlm_accuracy")}
    b = run_baselines(run)
    print(
        f"bf16: MLM perplexity {final['mlm_perplexity']:.1f} (unigram {b.unigram_perplexity:.1f}), "
        f"MLM accuracy {final['mlm_accuracy']:.3f} (most frequent token {b.most_frequent_rate:.3f})"
    )
    assert final["mlm_perplexity"] < b.unigram_perplexity, (final, b)
    assert final["mlm_accuracy"] > b.most_frequent_rate, (final, b)


# -- GPU precision paths, exercised on the CPU -------------------------------------------------
# fp16 autocast and torch.amp.GradScaler run on the CPU too, so the scaler path is the real one;
# the GPU's bf16 support and TF32 switches are torch.cuda facts, faked here.


def test_fp16_scales_the_loss_so_small_gradients_do_not_underflow(tmp_path):
    """A loss of ~1e-9: its fp16 gradients are 0 without scaling (the weights never move), not with it."""
    from support.toyloop import ToyTask, toy_context, train_toy

    task = ToyTask(scale=1e-9)
    before = [p.detach().clone() for p in task.model.parameters()]
    ctx = toy_context(tmp_path, save_steps=4)
    train_toy(ctx, task, amp_dtype=torch.float16)
    moved = [float((p.detach() - b).abs().max()) for p, b in zip(task.model.parameters(), before)]
    assert all(m > 1e-3 for m in moved), moved  # Adam moves each weight by ~lr once its gradient is not 0
    # the scale is training state: checkpointed with the optimizer, and restored on resume
    extra = torch.load(ctx.run.last_checkpoint() / "optimizer.pt", weights_only=True)
    assert extra["scaler"]["scale"] > 1.0


def test_fp16_scaler_state_is_restored_on_resume(tmp_path):
    from support.toyloop import ToyTask, toy_context, train_toy

    from engine.train.loop import load_checkpoint, make_optimizer, make_scaler, make_schedule

    ctx = toy_context(tmp_path, save_steps=4)
    train_toy(ctx, ToyTask(scale=1e-9), amp_dtype=torch.float16)
    path = ctx.run.last_checkpoint() / "optimizer.pt"
    extra = torch.load(path, weights_only=True)
    extra["scaler"]["scale"] = 512.0  # as if overflows had lowered it from the initial 65536
    torch.save(extra, path)
    model = ToyTask().model
    opt = make_optimizer(model, ctx.exp, CPU)
    scaler = make_scaler(torch.float16, CPU)
    load_checkpoint(ctx.run.last_checkpoint(), model, opt, make_schedule(opt, 0, 8), scaler=scaler)
    assert scaler.get_scale() == 512.0


def test_no_scaler_for_bf16_and_fp32():
    from engine.train.loop import make_scaler

    assert make_scaler(torch.bfloat16, CPU) is None and make_scaler(None, CPU) is None
    assert make_scaler(torch.float16, CPU) is not None


def _fake_gpu(monkeypatch, native_bf16: bool):
    def is_bf16_supported(including_emulation: bool = True) -> bool:
        return native_bf16 or including_emulation  # a pre-Ampere GPU emulates bf16

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100-SXM2-32GB")


def test_auto_precision_never_picks_emulated_bf16_on_a_gpu(monkeypatch):
    gpu = torch.device("cuda", 0)
    _fake_gpu(monkeypatch, native_bf16=False)
    assert autocast_dtype("auto", gpu) is None
    with pytest.raises(JobError) as e:
        autocast_dtype("bf16", gpu)
    assert "V100" in e.value.reason and "emulated" in e.value.reason and "fp16" in e.value.hint
    assert autocast_dtype("fp16", gpu) is torch.float16
    _fake_gpu(monkeypatch, native_bf16=True)
    assert autocast_dtype("auto", gpu) is torch.bfloat16 and autocast_dtype("bf16", gpu) is torch.bfloat16


def test_tf32_only_when_precision_allows_it(monkeypatch):
    from engine.train.loop import configure_backend

    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    gpu = torch.device("cuda", 0)
    configure_backend(gpu, "auto")
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    configure_backend(gpu, "fp32")  # true fp32 asked for: an earlier job's TF32 is switched off
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32


def test_fp16_overflowed_steps_do_not_make_the_logged_grad_norm_inf(tmp_path):
    """A large loss overflows the scaled fp16 gradients at first: the scaler skips those steps and lowers
    its scale; the logged gradient norm stays finite."""
    import math

    from support.toyloop import ToyTask, toy_context, train_toy

    from engine.events import StepLogged

    ctx = toy_context(tmp_path, max_grad_norm=1.0, logging_steps=8, epochs=2)
    train_toy(ctx, ToyTask(scale=10.0), amp_dtype=torch.float16)
    norms = [e.grad_norm for e in ctx.run.events() if isinstance(e, StepLogged)]
    assert all(math.isfinite(n) for n in norms) and norms[-1] > 0, norms
    extra = torch.load(ctx.run.last_checkpoint() / "optimizer.pt", weights_only=True)
    assert extra["scaler"]["scale"] < 65536.0  # overflows happened and were handled


def test_auto_device_on_a_gpu_box_trains_on_cuda_in_bf16_with_tf32(monkeypatch):
    """``device = "auto"`` as a job sets itself up (``setup_job``) on a box whose GPU is faked: CUDA with
    bf16 autocast and TF32 on an Ampere-class GPU; fp32 without autocast on an older one; TF32 off when
    fp32 is asked for; the CPU when no GPU is there."""
    import types

    from engine.train.loop import setup_job

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for key in ("LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)

    def exp(precision="auto"):
        return types.SimpleNamespace(device="auto", precision=precision, full_determinism=False)

    _fake_gpu(monkeypatch, native_bf16=True)
    assert setup_job(exp()) == (torch.device("cuda"), torch.bfloat16)
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    assert setup_job(exp("fp32")) == (torch.device("cuda"), None)
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    _fake_gpu(monkeypatch, native_bf16=False)  # a V100: auto stays fp32 rather than emulate bf16
    assert setup_job(exp()) == (torch.device("cuda"), None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert setup_job(exp()) == (torch.device("cpu"), None)
