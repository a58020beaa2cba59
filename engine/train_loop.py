"""The training loop shared by every task: optimizer, schedule, logging, control, checkpoints.

Why our own loop rather than HF ``Trainer``: the pretraining head computes
vocabulary logits only at masked positions (a custom loss), pause/cancel must
hold at optimizer-step boundaries and resume exactly (data order and masks are
functions of (seed, epoch, batch), RNG state is checkpointed), and logging must
not sync the GPU every step. All of that is awkward through Trainer callbacks
and cheap here. The loop is a plain function around small helpers.

A task supplies a :class:`TaskSpec`; the loop does the rest.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import Cancelled, JobError
from .events import CheckpointSaved, EvalFinished, PhaseStarted, RunStarted, StatusChanged, StepLogged, TableWritten
from .files import atomic_write_json, follow_umask, read_json
from .runs import repair_events
from .tables import Table


@dataclass
class TaskSpec:
    model: object
    n_batches: Callable[[int], int]  # epoch -> number of micro-batches
    get_batch: Callable[[int, int], dict]  # (epoch, index) -> tensors on CPU (+ "n_tokens", "n_samples")
    loss: Callable[[object, dict], tuple]  # (model, batch on device) -> (loss, {part: tensor})
    evaluate: Callable[[object, int], dict]  # (model, epoch) -> metrics (epoch 0 = before training)
    table_columns: tuple[str, ...]  # per-epoch table: epoch, train_loss, <these>, elapsed_s
    eval_split: str = "validation"
    save_final: Callable[[object, Path], None] | None = None
    eval_each_epoch: bool = True
    eval_before: bool = True
    table_name: str = "epochs"
    table_title: str = "Per-epoch metrics"
    notes: tuple[str, ...] = ()


def pick_device(pref: str):
    import torch

    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if pref.startswith("cuda") and not torch.cuda.is_available():
        raise JobError(f"device {pref!r} requested but CUDA is not available", 'set device = "auto" or "cpu"')
    return torch.device(pref)


def cpu_bf16_native() -> bool:
    """Whether this CPU runs bf16 matmuls in hardware (AVX512-BF16 or AMX), not emulated."""
    import torch

    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # pragma: no cover - older torch
        return False


def autocast_dtype(pref: str, device):
    """The autocast dtype for ``precision`` on ``device`` (None = fp32).

    GPUs: ``auto`` = bf16 where supported. CPUs: ``auto`` stays fp32 (bf16 changes the
    numerics, so it is an opt-in there); ``bf16`` autocasts matmuls to bf16 where the CPU
    supports it natively (measured 0.4-0.5x of an fp32 bert-base step with AMX) and raises
    where it would be emulated (slower than fp32); ``fp16`` is a GPU precision.
    """
    import torch

    if device.type != "cuda":
        if pref == "bf16":
            if not cpu_bf16_native():
                raise JobError(
                    'precision "bf16" on a CPU without native bf16 (AVX512-BF16/AMX) would be slower than fp32',
                    'set precision = "auto" or "fp32" on this machine',
                )
            return torch.bfloat16
        if pref == "fp16":
            raise JobError(
                'precision "fp16" is a GPU precision; this job runs on the CPU',
                'set precision = "bf16" (CPUs with AVX512-BF16/AMX) or "auto"',
            )
        return None
    if pref == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[pref]


def setup_job(exp):
    """Device, autocast dtype and quiet libraries (their progress bars would garble our output)."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    device = pick_device(exp.device)
    configure_backend(device)
    return device, autocast_dtype(exp.precision, device)


def configure_backend(device) -> None:
    import torch

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def make_optimizer(model, exp, device):
    import torch

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name or name.endswith(".bias") else decay).append(p)
    groups = [{"params": decay, "weight_decay": exp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # fused AdamW on CPU too: one kernel over all parameters, 0.14x of the foreach step at bert-base
    # (463 -> 64 ms, bench/levers_cpu.py); same update rule, last-bit rounding differs from foreach.
    kwargs = {"fused": True}
    return torch.optim.AdamW(groups, lr=exp.learning_rate, betas=(0.9, 0.999), eps=1e-8, **kwargs)


def make_schedule(optimizer, warmup_steps: int, total_steps: int):
    import torch

    def lr_lambda(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)


def memory_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return 0.0


# -- checkpoints --------------------------------------------------------------


def save_checkpoint(ctx, model, optimizer, scheduler, state: dict, keep: int = 2, rank_rng: list | None = None) -> Path:
    """``checkpoints/step-N/``: model.safetensors, optimizer.pt (weights-only loadable), state.json.

    ``rank_rng``: every rank's RNG state (:func:`rank_rng_state`) in a distributed job, whose ranks draw
    different amounts of randomness (their batches differ in shape), so each resumes its own.
    """
    import torch
    from safetensors.torch import save_model

    root = ctx.run.checkpoints
    final = root / f"step-{state['global_step']:08d}"
    tmp = root / f".tmp-{final.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    with disk_full_is_a_job_error(tmp, f"checkpoint {state['global_step']}"):
        tmp.mkdir(parents=True)
        save_model(model, str(tmp / "model.safetensors"))
        extra = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state()}
        if torch.cuda.is_available():
            extra["cuda_rng"] = torch.cuda.get_rng_state_all()
        if rank_rng:
            extra["rank_rng"] = rank_rng
        torch.save(extra, tmp / "optimizer.pt")
        ctx.emit(
            CheckpointSaved(step=state["global_step"], epoch=state["epoch"], path=str(final.relative_to(ctx.run.path)))
        )
        # The resume point of events.jsonl: everything up to and including CheckpointSaved.
        state = dict(state, events_offset=os.path.getsize(ctx.run.events_path))
        follow_umask(tmp)
        atomic_write_json(tmp / "state.json", state)  # written last: its presence marks a complete checkpoint
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    done = sorted(p for p in root.iterdir() if p.name.startswith("step-"))
    for old in done[:-keep] if keep > 0 else []:  # save_total_limit: keep the newest `keep` (0 = all)
        shutil.rmtree(old, ignore_errors=True)
    return final


class CheckpointDamaged(Exception):
    """One file of a checkpoint cannot be used; ``str()`` names it and why."""


class disk_full_is_a_job_error:
    """Around a write of ``what`` into folder ``tmp``: on a full disk, remove ``tmp`` and fail the job clearly.

    torch reports ENOSPC as ``RuntimeError: [enforce fail at inline_container.cc] unexpected pos``;
    the job instead fails with "disk full while writing checkpoint N: free X GiB", and no
    half-written folder is left to block a resume.
    """

    def __init__(self, tmp: Path, what: str):
        self.tmp, self.what = Path(tmp), what

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None or not isinstance(exc, Exception):
            return False
        shutil.rmtree(self.tmp, ignore_errors=True)
        from .files import free_gib, is_disk_full

        if is_disk_full(exc):
            raise JobError(
                f"disk full while writing {self.what}: free {free_gib(self.tmp.parent):.2f} GiB",
                "free some space on that disk (or move settings.runs_dir), then resume the run",
            ) from None
        return False


def load_checkpoint(path: Path, model, optimizer, scheduler, rank: int = 0) -> dict:
    """Restore a checkpoint; raises :class:`CheckpointDamaged` naming the file that cannot be used."""
    import torch
    from safetensors.torch import load_model

    def damaged(name: str, exc: BaseException):
        text = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        return CheckpointDamaged(f"{path.name}/{name}: {text}")

    state = read_json(path / "state.json", None)
    if not isinstance(state, dict) or not all(isinstance(state.get(k), int) for k in ("global_step", "epoch", "batch")):
        raise CheckpointDamaged(f"{path.name}/state.json: missing or not a checkpoint state")
    try:
        load_model(model, str(path / "model.safetensors"))
    except Exception as exc:  # noqa: BLE001 - truncated or foreign file
        raise damaged("model.safetensors", exc) from None
    try:
        extra = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
        optimizer.load_state_dict(extra["optimizer"])
        scheduler.load_state_dict(extra["scheduler"])
        torch.set_rng_state(extra["rng"])
        if "cuda_rng" in extra and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(extra["cuda_rng"])
        per_rank = extra.get("rank_rng") or []
        if rank < len(per_rank) and per_rank[rank]:  # a distributed checkpoint: this rank's own stream
            mine = per_rank[rank]
            torch.set_rng_state(mine["cpu"])
            if mine.get("cuda") is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state(mine["cuda"], torch.cuda.current_device())
    except Exception as exc:  # noqa: BLE001
        raise damaged("optimizer.pt", exc) from None
    return state


def load_latest_intact(ctx, model, optimizer, scheduler, rank: int = 0):
    """The newest checkpoint that loads, as (path, state, warnings); (None, {}, []) when there is none.

    A damaged one (truncated weights, optimizer state, state.json) is skipped with
    a warning naming the file (logged by the caller, after the events rewind);
    the previous intact one is used instead.
    """
    problems = []
    for path in ctx.run.checkpoints_newest_first():
        try:
            state = load_checkpoint(path, model, optimizer, scheduler, rank=rank)
            return (
                path,
                state,
                [f"checkpoint file {p} is damaged: resumed from the previous checkpoint {path.name}" for p in problems],
            )
        except CheckpointDamaged as exc:
            problems.append(str(exc))
    if problems:
        raise JobError(
            f"no intact checkpoint to resume from ({'; '.join(problems)})",
            f"delete {ctx.run.checkpoints} to start this run over, or start a new run without --resume",
        )
    return None, {}, []


class SavePolicy:
    """When to save a checkpoint inside an epoch: every ``save_steps`` steps and/or after ``save_minutes``.

    The clock restarts at every checkpoint (epoch ends included), so at most
    ``save_minutes`` of work lies between two checkpoints and a SIGKILL costs no more.
    """

    def __init__(self, save_steps: int, save_minutes: float, last_step: int | None = None):
        self.steps = int(save_steps or 0)
        self.seconds = float(save_minutes or 0) * 60
        self.last_step = last_step  # the step of the newest checkpoint (None: none yet)
        self.t_saved = time.monotonic()

    def due(self, step: int) -> bool:
        if step <= 0 or step == self.last_step:
            return False
        if self.steps and step % self.steps == 0:
            return True
        return self.seconds > 0 and time.monotonic() - self.t_saved >= self.seconds

    def saved(self, step: int) -> None:
        self.last_step = step
        self.t_saved = time.monotonic()


def window_state(loss_sum, parts_sum: dict, gn_sum, nonfinite, steps: int, tokens: int, samples: int) -> dict:
    """The logging window's running sums, so a checkpoint between two StepLogged events resumes them exactly.

    The float32 sums go through Python floats (exact for float32) and come back
    as the same float32 tensors (:func:`restore_window`).
    """
    return {
        "loss_sum": loss_sum.item(),
        "parts_sum": {k: float(v.item()) for k, v in parts_sum.items()},
        "gn_sum": gn_sum.item(),
        "nonfinite": int(nonfinite.item()),
        "steps": steps,
        "tokens": tokens,
        "samples": samples,
    }


def restore_window(saved: dict | None, device) -> tuple:
    """(loss_sum, parts_sum, gn_sum, nonfinite, steps, tokens, samples) from :func:`window_state` (zeros if None)."""
    import torch

    saved = saved or {}

    def f32(x):
        return torch.tensor(float(x), dtype=torch.float32, device=device)

    return (
        f32(saved.get("loss_sum", 0.0)),
        {k: f32(v) for k, v in saved.get("parts_sum", {}).items()},
        f32(saved.get("gn_sum", 0.0)),
        torch.tensor(int(saved.get("nonfinite", 0)), dtype=torch.long, device=device),
        int(saved.get("steps", 0)),
        int(saved.get("tokens", 0)),
        int(saved.get("samples", 0)),
    )


def rank_rng_state(device) -> dict:
    """This rank's RNG state: CPU, and its own CUDA device's."""
    import torch

    return {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def rewind_events(ctx, state: dict) -> None:
    """Cut ``events.jsonl`` back to the checkpoint, so resumed curves have no duplicate steps.

    The cut-off tail (steps done after the checkpoint by the attempt that died)
    is kept in ``events.discarded.jsonl`` for forensics.
    """
    path = ctx.run.events_path
    offset = int(state.get("events_offset", 0))
    repair_events(path)
    size = os.path.getsize(path)
    if 0 < offset < size:
        ctx.writer._fh.flush()
        with open(path, "rb+") as fh:
            fh.seek(offset)
            tail = fh.read()
            fh.truncate(offset)
        with open(ctx.run.path / "events.discarded.jsonl", "ab") as fh:
            fh.write(tail)
        ctx.writer._fh.seek(0, os.SEEK_END)


# -- the loop -----------------------------------------------------------------


def epoch_table(spec: TaskSpec, history: list[dict]) -> Table:
    cols = ("epoch", "train_loss", *spec.table_columns, "elapsed_s")
    rows = [tuple(h.get(c) for c in cols) for h in history]
    return Table(name=spec.table_name, columns=cols, rows=rows, title=spec.table_title, notes=spec.notes)


class Dist:
    """This process's place in a torchrun/accelerate job (rank 0 of 1 when not distributed).

    Rank 0 alone evaluates, writes events, tables and checkpoints; the other ranks
    only train their share of the batches and follow rank 0's control decisions.
    """

    def __init__(self):
        import torch.distributed as d

        self.d = d
        self.on = d.is_available() and d.is_initialized()
        self.rank = d.get_rank() if self.on else 0
        self.world = d.get_world_size() if self.on else 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.on:
            self.d.barrier()

    def broadcast(self, value: int, device) -> int:
        import torch

        if not self.on:
            return value
        t = torch.tensor([value], dtype=torch.long, device=device)
        self.d.broadcast(t, src=0)
        return int(t.item())

    def gather(self, obj) -> list:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.on:
            return [obj]
        out = [None] * self.world
        self.d.all_gather_object(out, obj)
        return out

    def sum_(self, t):
        if self.on:
            self.d.all_reduce(t)
        return t


def _loss_module(model, fn):
    """DDP must see the forward call to sync gradients: wrap the task's loss in a module."""
    import torch

    class LossModule(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, batch):
            return fn(self.model, batch)

    return LossModule()


def train(ctx, spec: TaskSpec, device, amp_dtype=None) -> dict:
    import contextlib

    import torch

    exp = ctx.exp
    dist = Dist()
    model = spec.model.to(device)
    if dist.on:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        forward = DistributedDataParallel(_loss_module(model, spec.loss), device_ids=ids)
    else:
        forward = None
    optimizer = make_optimizer(model, exp, device)
    accum = exp.gradient_accumulation_steps

    def n_batches_of(epoch: int) -> int:  # this rank's share (equal for all ranks)
        return spec.n_batches(epoch) // dist.world

    # Every epoch has the same number of batches (the same rows, reshuffled): one epoch's count is
    # enough, so `epochs = 1000000000` with `max_steps` starts at once instead of counting every epoch.
    total_steps = math.ceil(n_batches_of(0) / accum) * exp.epochs
    if exp.max_steps:
        total_steps = min(total_steps, exp.max_steps)
    warmup = int(exp.warmup * total_steps) if exp.warmup < 1 else int(exp.warmup)
    scheduler = make_schedule(optimizer, warmup, total_steps)

    state = {"global_step": 0, "epoch": 0, "batch": 0, "history": [], "elapsed": 0.0}
    last, loaded, damaged = (
        load_latest_intact(ctx, model, optimizer, scheduler, rank=dist.rank) if ctx.resume else (None, {}, [])
    )
    if last is not None:
        state.update(loaded)
        if dist.main:
            rewind_events(ctx, state)
            # The rewind cut this attempt's first events too: record the resume again.
            ctx.emit(StatusChanged(status="running", reason="resumed"))
            ctx.emit(RunStarted(run_id=ctx.run.run_id, experiment=ctx.exp.name, task=ctx.exp.task, resumed=True))
        ctx.log(
            f"resumed from {last.name}: epoch {state['epoch']}, batch {state['batch']}, step {state['global_step']}; "
            "events after that checkpoint were moved to events.discarded.jsonl"
        )
        for warning in damaged:
            ctx.log(warning, "warning")
    elif ctx.resume and dist.main:
        # Nothing to continue from: the earlier attempt's events would duplicate this one's.
        ctx.writer.discard_before(ctx.writer.opened_at)
        ctx.log("no checkpoint found: starting this run from the beginning", "warning")

    history: list[dict] = state["history"]
    elapsed0 = float(state.get("elapsed", 0.0))
    t_start = time.perf_counter()

    def elapsed() -> float:
        return elapsed0 + time.perf_counter() - t_start

    def snapshot(epoch: int, batch: int) -> dict:
        return {
            "global_step": global_step,
            "epoch": epoch,
            "batch": batch,
            "history": history,
            "elapsed": elapsed(),
            "total_steps": total_steps,
            "world_size": dist.world,
        }

    evaluated = []  # epochs evaluated by this attempt (empty when a resume starts past the last evaluation)

    def run_eval(epoch: int, train_loss):
        metrics = {}
        evaluated.append(epoch)
        if dist.main:
            ctx.emit(PhaseStarted(phase="eval", detail=f"epoch {epoch} on {spec.eval_split}"))
            model.eval()
            with torch.no_grad(), torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                metrics = spec.evaluate(model, epoch)
            model.train()
            ctx.emit(EvalFinished(epoch=epoch, step=global_step, split=spec.eval_split, metrics=metrics))
            row = {"epoch": epoch, "train_loss": train_loss, "elapsed_s": round(elapsed(), 3)}
            row.update({c: metrics.get(c) for c in spec.table_columns})
            history.append(row)
            table = epoch_table(spec, history)
            ctx.emit(TableWritten(name=table.name, path=str(ctx.writer.write_table(table))))
        dist.barrier()
        return metrics

    saves = SavePolicy(
        exp.save_steps, exp.save_minutes, last_step=int(state["global_step"]) if last is not None else None
    )

    def checkpoint(state_now: dict) -> None:
        rank_rng = dist.gather(rank_rng_state(device)) if dist.on else None
        if dist.main:
            save_checkpoint(ctx, model, optimizer, scheduler, state_now, keep=exp.save_total_limit, rank_rng=rank_rng)
        saves.saved(state_now["global_step"])
        dist.barrier()

    def checkpoint_mid_epoch(epoch: int, b: int) -> None:
        """A checkpoint between two optimizer steps, logging window included (skipped if this step has one)."""
        if global_step == saves.last_step:
            return
        state_now = snapshot(epoch, b)
        window = window_state(loss_sum, parts_sum, gn_sum, nonfinite, win_steps, win_tokens, win_samples)
        state_now.update(epoch_loss_sum=epoch_loss_sum, epoch_loss_n=epoch_loss_n, window=dist.gather(window))
        checkpoint(state_now)

    def poll_control() -> bool:
        """Rank 0 reads pause/cancel requests and stop signals (blocking while paused) and decides whether a
        checkpoint is due; everyone follows it. Returns True when a checkpoint is due now."""
        code, stop_exc = 0, None
        if dist.main:
            try:
                ctx.poll()
                code = int(saves.due(global_step))
            except Cancelled as exc:  # Interrupted (a stop signal) included
                code, stop_exc = 2, exc
        code = dist.broadcast(code, device)
        if code == 2:
            raise stop_exc or Cancelled()
        return code == 1

    global_step = int(state["global_step"])
    if spec.eval_before and not history:
        run_eval(0, None)

    model.train()
    ctx.emit(
        PhaseStarted(
            phase="train",
            detail=f"{total_steps} optimizer steps on {device}" + (f" x {dist.world} processes" if dist.on else ""),
        )
    )
    log_every = exp.logging_steps
    nan_every = min(log_every, 8)  # NaN/inf detection: a host sync every few steps, not every step
    session_steps, session_t0 = 0, time.perf_counter()
    win_t0 = time.perf_counter()
    # The logging window (sums since the last StepLogged); a mid-epoch checkpoint carries one per rank.
    windows = state.get("window")
    mine = windows[dist.rank] if isinstance(windows, list) and len(windows) == dist.world else None
    loss_sum, parts_sum, gn_sum, nonfinite, win_steps, win_tokens, win_samples = restore_window(mine, device)
    epoch_loss_sum, epoch_loss_n = float(state.get("epoch_loss_sum", 0.0)), int(state.get("epoch_loss_n", 0))
    state.pop("window", None)
    stop = False
    metrics: dict = history[-1] if history else {}

    # A checkpoint at the last step (e.g. the attempt died while saving the final model) leaves nothing to train.
    first_epoch = exp.epochs if global_step >= total_steps else int(state["epoch"])
    for epoch in range(first_epoch, exp.epochs):
        n_batches = n_batches_of(epoch)
        start_batch = int(state["batch"]) if epoch == int(state["epoch"]) else 0
        if start_batch == 0:
            epoch_loss_sum, epoch_loss_n = 0.0, 0
        optimizer.zero_grad(set_to_none=True)
        b = start_batch
        while b < n_batches:
            try:
                if poll_control():
                    checkpoint_mid_epoch(epoch, b)
            except Cancelled:  # cancel request or stop signal: save where we are, then stop
                checkpoint_mid_epoch(epoch, b)
                raise
            # one optimizer step = `accum` micro-batches (this rank's share: batch b*world + rank)
            micro_end = min(b + accum, n_batches)
            n_micro = micro_end - b
            for mb in range(b, micro_end):
                batch = spec.get_batch(epoch, mb * dist.world + dist.rank)
                win_tokens += batch.pop("n_tokens")
                win_samples += batch.pop("n_samples")
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                sync = contextlib.nullcontext() if forward is None or mb == micro_end - 1 else forward.no_sync()
                with sync:
                    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                        loss, parts = spec.loss(model, batch) if forward is None else forward(batch)
                    (loss / n_micro).backward()
                loss_sum += loss.detach().float() / n_micro
                for k, v in parts.items():
                    parts_sum[k] = parts_sum.get(k, 0) + v.detach().float() / n_micro
            b = micro_end
            bad = ~torch.isfinite(loss_sum)
            if exp.nan_policy == "skip":
                if bool(
                    dist.sum_(bad.long().clone())
                ):  # host sync per step: the price of skipping exactly the bad step
                    optimizer.zero_grad(set_to_none=True)
                    ctx.log(f"step {global_step + 1}: non-finite loss, step skipped", "warning")
                    loss_sum.zero_()
                    parts_sum = {}
                    continue
            if exp.max_grad_norm > 0:
                gn = torch.nn.utils.clip_grad_norm_(model.parameters(), exp.max_grad_norm)
                gn_sum += gn.detach().float()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            global_step += 1
            session_steps += 1
            win_steps += 1
            nonfinite += bad.long()
            log_now = global_step % log_every == 0 or b >= n_batches or global_step >= total_steps
            if log_now or global_step % nan_every == 0:
                if int(dist.sum_(nonfinite.clone()).item()) > 0:
                    raise JobError(
                        f"loss became NaN/inf by step {global_step}",
                        'lower learning_rate, raise warmup, or set nan_policy = "skip"',
                    )
            if log_now:
                # The host sync of the loop: once per logging interval (plus the NaN check above).
                totals = torch.tensor(
                    [loss_sum.item(), float(win_tokens), float(win_samples)], dtype=torch.float64, device=device
                )
                totals = dist.sum_(totals)
                loss_val = totals[0].item() / dist.world / win_steps
                now = time.perf_counter()
                dt = max(now - win_t0, 1e-9)
                rate = (now - session_t0) / max(session_steps, 1)
                ctx.emit(
                    StepLogged(
                        step=global_step,
                        total_steps=total_steps,
                        epoch=epoch + b / n_batches,
                        loss=loss_val,
                        learning_rate=scheduler.get_last_lr()[0],
                        parts={k: v.item() / win_steps for k, v in parts_sum.items()},
                        grad_norm=(gn_sum.item() / win_steps) if exp.max_grad_norm > 0 else None,
                        tokens_per_s=totals[1].item() / dt,
                        samples_per_s=totals[2].item() / dt,
                        eta_s=rate * (total_steps - global_step),
                        memory_mb=memory_mb(device),
                    )
                )
                epoch_loss_sum += loss_val * win_steps
                epoch_loss_n += win_steps
                loss_sum.zero_()
                gn_sum.zero_()
                parts_sum = {}
                win_steps = win_tokens = win_samples = 0
                win_t0 = now
            if global_step >= total_steps:
                stop = True
                break
        train_loss = epoch_loss_sum / epoch_loss_n if epoch_loss_n else None
        last_epoch = stop or epoch == exp.epochs - 1
        if spec.eval_each_epoch or last_epoch:
            metrics = run_eval(epoch + 1, train_loss)
        else:
            history.append({"epoch": epoch + 1, "train_loss": train_loss, "elapsed_s": round(elapsed(), 3)})
        checkpoint(snapshot(epoch + 1, 0))
        state["batch"] = 0
        if stop:
            break

    if not evaluated and dist.main:
        # Resumed after the last evaluation (a kill during the final save): the final metrics and the
        # task's predictions live in memory only, so evaluate the restored weights again. No new event
        # or table row: the first attempt's final EvalFinished is still in events.jsonl.
        model.eval()
        with torch.no_grad(), torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            metrics = spec.evaluate(model, int(history[-1]["epoch"]) if history else int(state["epoch"]))
        model.train()
        ctx.log("resumed after the final evaluation: evaluated the final weights again for the results")
    final = ctx.run.path / "model"
    if spec.save_final is not None and dist.main:
        tmp = ctx.run.path / ".model.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        with disk_full_is_a_job_error(tmp, "the final model"):
            spec.save_final(model, tmp)
        follow_umask(tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    dist.barrier()
    return {
        "final": {k: v for k, v in metrics.items() if k not in ("epoch",)},
        "history": history,
        "global_step": global_step,
        "elapsed_s": round(elapsed(), 3),
        "world_size": dist.world,
    }
