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

import contextlib
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from engine.device import pick_device
from engine.errors import Cancelled, JobError, Pruned
from engine.events import (
    BatchReduced,
    CheckpointSaved,
    EvalFinished,
    PhaseStarted,
    StepLogged,
    TableWritten,
    TrainingStopped,
)
from engine.files import atomic_write_json, follow_umask, read_json
from engine.tables import Table
from engine.train.best import BestTracker, EvalHook, Evaluation
from engine.train.context import TaskContext
from engine.train.oom import is_out_of_memory, next_split, per_device_batch, record_split, saved_split, split_batch


@dataclass
class TaskSpec:
    model: Any
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
    eval_hooks: tuple[EvalHook, ...] = ()  # after each evaluation during training, after the best model's check


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
    # is_bf16_supported() alone counts emulation (pre-Ampere GPUs run bf16 slower than fp32): ask for hardware
    native = torch.cuda.is_bf16_supported(including_emulation=False)
    if pref == "auto":
        return torch.bfloat16 if native else None
    if pref == "bf16" and not native:
        raise JobError(
            f'precision "bf16" on {torch.cuda.get_device_name(device)}, which has no native bf16 (before Ampere): '
            "it would be emulated, slower than fp32",
            'set precision = "fp16" (mixed precision with loss scaling) or "auto" on this GPU',
        )
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[pref]


def setup_job(exp):
    """Device, autocast dtype and quiet libraries (their progress bars would garble our output)."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    device = pick_device(exp.device)
    configure_backend(device, exp.precision)
    set_determinism(exp.full_determinism)
    return device, autocast_dtype(exp.precision, device)


def set_determinism(on: bool) -> None:
    """``full_determinism``: deterministic kernels only (HF ``enable_full_determinism``), or the defaults back.

    Set both ways because it is process-wide and one process may run several jobs. cuBLAS
    reads ``CUBLAS_WORKSPACE_CONFIG`` when its first handle is made, so it is set before any
    model reaches the GPU; a job that already used cuBLAS in this process keeps its workspace.
    """
    import torch

    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.deterministic = on
    if on:
        torch.backends.cudnn.benchmark = False


def configure_backend(device, precision: str = "auto") -> None:
    """TF32 matmuls (10-bit mantissa, ~8x faster fp32 matmuls on Ampere+) unless ``precision = "fp32"`` asks for
    true fp32; set both ways, so an earlier job of this process cannot leave it on."""
    import torch

    if device.type == "cuda":
        tf32 = precision != "fp32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32


def make_scaler(amp_dtype, device):
    """fp16 autocast needs loss scaling (small gradients underflow in fp16, large ones overflow): a GradScaler.

    None for bf16 and fp32, whose exponent range is fp32's. The scaler skips a step whose gradients
    are not finite and lowers its scale; its state is checkpointed with the optimizer's.
    """
    import torch

    if amp_dtype is not torch.float16:
        return None
    return torch.amp.GradScaler(device.type)


def make_optimizer(model, exp, device):
    import torch

    decay: list = []
    no_decay: list = []
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


def save_checkpoint(
    ctx: TaskContext,
    model,
    optimizer,
    scheduler,
    state: dict,
    keep: int = 2,
    rank_rng: list | None = None,
    scaler=None,
    protect: int | None = None,
) -> Path:
    """``checkpoints/step-N/``: model.safetensors, optimizer.pt (weights-only loadable), state.json.

    ``rank_rng``: every rank's RNG state (:func:`rank_rng_state`) in a distributed job, whose ranks draw
    different amounts of randomness (their batches differ in shape), so each resumes its own.
    ``scaler``: the fp16 GradScaler, whose scale is part of the training state.
    ``protect``: the step of a checkpoint retention must keep besides the newest ``keep`` (the best model's).
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
        if scaler is not None:
            extra["scaler"] = scaler.state_dict()
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
    kept = f"step-{protect:08d}" if protect is not None else ""
    for old in done[:-keep] if keep > 0 else []:  # save_total_limit: keep the newest `keep` (0 = all)
        if old.name != kept:  # load_best_model_at_end loads the best one at the end
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
        from engine.files import free_gib, is_disk_full

        if is_disk_full(exc):
            raise JobError(
                f"disk full while writing {self.what}: free {free_gib(self.tmp.parent):.2f} GiB",
                "free some space on that disk (or move settings.runs_dir), then resume the run",
            ) from None
        return False


def load_checkpoint(path: Path, model, optimizer, scheduler, rank: int = 0, scaler=None) -> dict:
    """Restore a checkpoint; raises :class:`CheckpointDamaged` naming the file that cannot be used.

    The CUDA RNG states of the GPUs this process sees are restored: a run saved where 8 GPUs were
    visible (a foreground run) resumes where one is (a queue job), device 0 continuing device 0's stream.
    """
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
            for i, cuda_state in enumerate(extra["cuda_rng"][: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(cuda_state, i)
        if scaler is not None and "scaler" in extra:
            scaler.load_state_dict(extra["scaler"])
        per_rank = extra.get("rank_rng") or []
        if rank < len(per_rank) and per_rank[rank]:  # a distributed checkpoint: this rank's own stream
            mine = per_rank[rank]
            torch.set_rng_state(mine["cpu"])
            if mine.get("cuda") is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state(mine["cuda"], torch.cuda.current_device())
    except Exception as exc:  # noqa: BLE001
        raise damaged("optimizer.pt", exc) from None
    return state


def load_latest_intact(ctx: TaskContext, model, optimizer, scheduler, rank: int = 0, scaler=None):
    """The newest checkpoint that loads, as (path, state, warnings); (None, {}, []) when there is none.

    A damaged one (truncated weights, optimizer state, state.json) is skipped with
    a warning naming the file (logged by the caller, after the events rewind);
    the previous intact one is used instead.
    """
    problems: list[str] = []
    for path in ctx.run.checkpoints_newest_first():
        try:
            state = load_checkpoint(path, model, optimizer, scheduler, rank=rank, scaler=scaler)
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
        if self.due_steps(step):
            return True
        return (
            step > 0 and step != self.last_step and self.seconds > 0 and time.monotonic() - self.t_saved >= self.seconds
        )

    def due_steps(self, step: int) -> bool:
        """Due by ``save_steps`` alone: the same answer on every rank, with no clock."""
        return bool(step > 0 and step != self.last_step and self.steps and step % self.steps == 0)

    def saved(self, step: int) -> None:
        self.last_step = step
        self.t_saved = time.monotonic()


def rank_rng_state(device) -> dict:
    """This rank's RNG state: CPU, and its own CUDA device's."""
    import torch

    return {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


# -- the loop's helpers ---------------------------------------------------------


def epoch_table(spec: TaskSpec, history: list[dict]) -> Table:
    cols = ("epoch", "train_loss", *spec.table_columns, "elapsed_s")
    rows = tuple(tuple(h.get(c) for c in cols) for h in history)
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

    def max_(self, t):
        if self.on:
            self.d.all_reduce(t, op=self.d.ReduceOp.MAX)
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


class Window:
    """The logging window: running sums since the last StepLogged, and the epoch's logged loss.

    The sums stay on the device (adding to them costs no host sync). A mid-epoch checkpoint
    stores them (:meth:`checkpoint_state`, one window per rank) and a resume restores them
    (:meth:`resumed`), so the next StepLogged equals an uninterrupted run's. The float32 sums
    go through Python floats (exact for float32) and come back as the same float32 tensors.
    """

    def __init__(self, device, saved: dict | None = None, epoch_sum: float = 0.0, epoch_n: int = 0):
        import torch

        saved = saved or {}

        def f32(x):
            return torch.tensor(float(x), dtype=torch.float32, device=device)

        self.loss = f32(saved.get("loss_sum", 0.0))  # mean loss per optimizer step, summed
        self.parts = {k: f32(v) for k, v in saved.get("parts_sum", {}).items()}
        self.grad_norm = f32(saved.get("gn_sum", 0.0))
        self.nonfinite = torch.tensor(int(saved.get("nonfinite", 0)), dtype=torch.long, device=device)
        self.steps = int(saved.get("steps", 0))
        self.tokens = int(saved.get("tokens", 0))
        self.samples = int(saved.get("samples", 0))
        self.t0 = time.perf_counter()
        self.epoch_sum, self.epoch_n = epoch_sum, epoch_n  # logged loss x steps, and steps, this epoch

    @classmethod
    def resumed(cls, state: dict, dist: Dist, device) -> Window:
        """The window a checkpoint carried for this rank (zeros at an epoch boundary or a fresh start)."""
        windows = state.pop("window", None)
        mine = windows[dist.rank] if isinstance(windows, list) and len(windows) == dist.world else None
        return cls(device, mine, float(state.get("epoch_loss_sum", 0.0)), int(state.get("epoch_loss_n", 0)))

    def checkpoint_state(self, dist: Dist) -> dict:
        """What a mid-epoch checkpoint stores: the epoch's loss and every rank's window (host syncs: rare)."""
        mine = {
            "loss_sum": self.loss.item(),
            "parts_sum": {k: float(v.item()) for k, v in self.parts.items()},
            "gn_sum": self.grad_norm.item(),
            "nonfinite": int(self.nonfinite.item()),
            "steps": self.steps,
            "tokens": self.tokens,
            "samples": self.samples,
        }
        return {"epoch_loss_sum": self.epoch_sum, "epoch_loss_n": self.epoch_n, "window": dist.gather(mine)}

    def add_step(self, loss, parts: dict) -> None:
        """Count one optimizer step's mean loss and parts (a skipped step's are never added)."""
        self.loss += loss
        for k, v in parts.items():
            self.parts[k] = self.parts.get(k, 0) + v

    def new_epoch(self) -> None:
        self.epoch_sum, self.epoch_n = 0.0, 0

    def epoch_loss(self) -> float | None:
        return self.epoch_sum / self.epoch_n if self.epoch_n else None

    def logged(self, loss: float, now: float) -> None:
        """After a StepLogged with mean ``loss``: count it into the epoch, start a new window."""
        self.epoch_sum += loss * self.steps
        self.epoch_n += self.steps
        self.loss.zero_()
        self.grad_norm.zero_()
        self.parts = {}
        self.steps = self.tokens = self.samples = 0
        self.t0 = now


@dataclass
class Loop:
    """What the loop's helpers share: the job, the task, the model, its optimizer and schedule, the progress."""

    ctx: TaskContext
    spec: TaskSpec
    device: Any
    amp_dtype: Any
    dist: Dist
    model: Any
    forward: Any  # the DDP-wrapped loss (None when not distributed)
    optimizer: Any
    scheduler: Any
    total_steps: int
    scaler: Any = None  # the fp16 GradScaler (None for bf16 and fp32)
    step: int = 0  # optimizer steps done (global_step)
    history: list[dict] = field(default_factory=list)  # per-epoch rows (the epochs table)
    evaluated: list[float] = field(default_factory=list)  # epochs evaluated by this attempt
    saves: SavePolicy = field(default_factory=lambda: SavePolicy(0, 0))  # replaced once resumed
    elapsed0: float = 0.0  # seconds trained by earlier attempts
    t_start: float = field(default_factory=time.perf_counter)
    session_steps: int = 0  # steps of this attempt, for the ETA
    session_t0: float = field(default_factory=time.perf_counter)
    best: BestTracker | None = None  # the best evaluation so far (metric_for_best_model, early stopping)
    stopped: dict | None = None  # {"reason", "epoch", "step"} once a hook stopped training (early stopping)
    split: int = 1  # auto_find_batch_size: every micro-batch runs as this many pieces

    def elapsed(self) -> float:
        return self.elapsed0 + time.perf_counter() - self.t_start

    def n_batches(self, epoch: int) -> int:  # this rank's share (equal for all ranks)
        return self.spec.n_batches(epoch) // self.dist.world

    def autocast(self):
        import torch

        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def snapshot(self, epoch: int, batch: int) -> dict:
        return {
            "global_step": self.step,
            "epoch": epoch,
            "batch": batch,
            "history": self.history,
            "elapsed": self.elapsed(),
            "total_steps": self.total_steps,
            "world_size": self.dist.world,
            "best": self.best.state() if self.best is not None else None,
            "stopped": self.stopped,
        }


def start_loop(ctx: TaskContext, spec: TaskSpec, device, amp_dtype) -> tuple[Loop, dict]:
    """The model on its device (DDP-wrapped when distributed), AdamW, the schedule; resumed when asked."""
    exp = ctx.exp
    dist = Dist()
    model = spec.model.to(device)
    forward = None
    if dist.on:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        forward = DistributedDataParallel(_loss_module(model, spec.loss), device_ids=ids)
    optimizer = make_optimizer(model, exp, device)
    # Every epoch has the same number of batches (the same rows, reshuffled): one epoch's count is
    # enough, so `epochs = 1000000000` with `max_steps` starts at once instead of counting every epoch.
    total_steps = math.ceil(spec.n_batches(0) // dist.world / exp.gradient_accumulation_steps) * exp.epochs
    if exp.max_steps:
        total_steps = min(total_steps, exp.max_steps)
    warmup = int(exp.warmup * total_steps) if exp.warmup < 1 else int(exp.warmup)
    scheduler = make_schedule(optimizer, warmup, total_steps)
    scaler = make_scaler(amp_dtype, device)
    lp = Loop(ctx, spec, device, amp_dtype, dist, model, forward, optimizer, scheduler, total_steps, scaler)
    if exp.auto_find_batch_size:
        lp.split = saved_split(ctx.run.config())  # an earlier attempt ran out of memory: start as it ended
    return lp, at_state(lp, resume(lp) if ctx.resume else {})


def at_state(lp: Loop, resumed: dict) -> dict:
    """Set the loop's progress to a checkpoint's ``resumed`` state (or the start: {}); returns the whole state."""
    exp = lp.ctx.exp
    state = {"global_step": 0, "epoch": 0, "batch": 0, "history": [], "elapsed": 0.0} | resumed
    lp.step, lp.history, lp.elapsed0 = int(state["global_step"]), state["history"], float(state["elapsed"])
    lp.saves = SavePolicy(exp.save_steps, exp.save_minutes, last_step=lp.step if resumed else None)
    lp.best = BestTracker.for_experiment(exp)
    if lp.best is not None:
        lp.best.restored(state.get("best"))
    lp.stopped = state.get("stopped") if isinstance(state.get("stopped"), dict) else None
    lp.evaluated = []
    lp.t_start = time.perf_counter()
    return state


def resume(lp: Loop) -> dict:
    """Load the newest intact checkpoint (its state; {} when there is none) and cut events.jsonl back to it."""
    ctx, dist = lp.ctx, lp.dist
    last, state, damaged = load_latest_intact(
        ctx, lp.model, lp.optimizer, lp.scheduler, rank=dist.rank, scaler=lp.scaler
    )
    if last is None:
        if dist.main:  # Nothing to continue from: the earlier attempt's events would duplicate this one's.
            ctx.writer.discard_events(0, ctx.writer.opened_at)
            ctx.log("no checkpoint found: starting this run from the beginning", "warning")
        return {}
    saved_world = state.get("world_size")
    if isinstance(saved_world, int) and saved_world != dist.world:
        # Rank r reads batches r, r + world, ...: another process count would skip or repeat data,
        # and the saved logging windows (one per rank) and the schedule's length would not fit.
        raise JobError(
            f"{last.name} was saved by {saved_world} training process(es); this attempt runs {dist.world}",
            f"resume with nproc_per_node = {saved_world} (and the same nnodes), or start a new run without --resume",
        )
    if dist.main:
        offset = int(state.get("events_offset", 0))
        if offset > 0:  # the cut-off tail (steps after the checkpoint) goes to events.discarded.jsonl
            ctx.writer.discard_events(offset)
        ctx.announce_start()  # the rewind cut this attempt's first events too: record the resume again
    ctx.log(
        f"resumed from {last.name}: epoch {state['epoch']}, batch {state['batch']}, step {state['global_step']}; "
        "events after that checkpoint were moved to events.discarded.jsonl"
    )
    for warning in damaged:
        ctx.log(warning, "warning")
    return state


CONTROL_EVERY = 8  # distributed: rank 0's decisions reach the other ranks every this many optimizer steps
PAUSED = 3  # the control code rank 0 broadcasts while paused (a heartbeat: no collective waits for the pause)
STOP, PRUNE = 1, 2  # after an evaluation: rank 0 stopped training early, or a sweep's pruner stops the trial


def evaluate(lp: Loop, epoch: float, train_loss: float | None) -> dict:
    """Rank 0 evaluates, emits EvalFinished, rewrites the epochs table and decides on it
    (:func:`after_evaluation`); every rank waits for it and learns whether training stops.

    ``epoch``: 0 before training, N at the end of epoch N, a fraction inside an epoch (``eval_steps``).
    """
    ctx, spec, metrics = lp.ctx, lp.spec, {}
    lp.evaluated.append(epoch)
    if lp.dist.main:
        ctx.emit(PhaseStarted(phase="eval", detail=f"epoch {epoch:g} on {spec.eval_split}"))
        metrics = run_evaluation(lp, epoch)
        ctx.emit(EvalFinished(epoch=epoch, step=lp.step, split=spec.eval_split, metrics=metrics))
        row = {"epoch": epoch, "step": lp.step, "train_loss": train_loss, "elapsed_s": round(lp.elapsed(), 3)}
        row.update({c: metrics.get(c) for c in spec.table_columns})
        lp.history.append(row)
        table = epoch_table(spec, lp.history)
        ctx.emit(TableWritten(name=table.name, path=str(ctx.writer.write_table(table))))
        if epoch != 0:  # the evaluation before training judges no trained weights
            after_evaluation(lp, Evaluation(epoch=epoch, step=lp.step, metrics=metrics))
    if lp.dist.on:  # rank 0 decided: one broadcast per evaluation tells every rank (go on, stop, prune)
        code = lp.dist.broadcast(STOP if lp.stopped is not None else PRUNE if ctx.prune_reason else 0, lp.device)
        if code == STOP and lp.stopped is None:
            lp.stopped = {"reason": "stopped by rank 0", "epoch": epoch, "step": lp.step}
        if code == PRUNE and not ctx.prune_reason:
            ctx.prune_reason = "pruned by the sweep's pruner (rank 0)"
    lp.dist.barrier()
    return metrics


def run_evaluation(lp: Loop, epoch: float) -> dict:
    """The task's evaluation of the current weights (eval mode, no gradients, the job's autocast).

    Out of memory here is the evaluation's own batch: ``auto_find_batch_size`` (training batches)
    cannot help, so the job fails saying which key to lower.
    """
    import torch

    lp.model.eval()
    try:
        with torch.no_grad(), lp.autocast():
            metrics = lp.spec.evaluate(lp.model, int(epoch))
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        raise JobError(
            f"out of memory while evaluating (eval_batch_size = {lp.ctx.exp.eval_batch_size})",
            "lower eval_batch_size (training batches are not the cause)",
        ) from None
    lp.model.train()
    return metrics


def after_evaluation(lp: Loop, ev: Evaluation) -> None:
    """The one place an evaluation during training is decided on: the best model and early stopping
    (:class:`BestTracker`), then the task's ``eval_hooks`` (a sweep's pruner). The first reason to stop
    is kept in ``lp.stopped`` (and so in the next checkpoint), emitted as TrainingStopped and logged."""
    reasons = [lp.best.update(ev) if lp.best is not None else None]
    reasons += [hook(ev) for hook in lp.spec.eval_hooks]
    reason = next((r for r in reasons if r), None)
    if reason and lp.stopped is None:
        lp.stopped = {"reason": reason, "epoch": ev.epoch, "step": ev.step}
        lp.ctx.emit(TrainingStopped(reason=reason, epoch=ev.epoch, step=ev.step))
        lp.ctx.log(reason)


def evaluate_again(lp: Loop, epoch: int) -> dict:
    """The final weights' metrics when a resume starts after the last evaluation (a kill during the final save).

    The final metrics and the task's predictions live in memory only, so the restored weights are
    evaluated again. No new event or table row: the first attempt's final EvalFinished is in events.jsonl.
    """
    metrics = run_evaluation(lp, epoch)
    lp.ctx.log("resumed after the final evaluation: evaluated the final weights again for the results")
    return metrics


def last_evaluation(lp: Loop) -> dict | None:
    """The newest evaluated row of the history as {"epoch", "step", "metrics"} (the table's columns)."""
    for row in reversed(lp.history):
        if any(c in row for c in lp.spec.table_columns) and row.get("epoch") != 0:
            return {
                "epoch": row["epoch"],
                "step": row.get("step"),
                "metrics": {c: row[c] for c in lp.spec.table_columns},
            }
    return None


def load_best_model(lp: Loop, best: BestTracker) -> dict:
    """Rank 0 loads the best evaluation's checkpointed weights and evaluates them (for the results and the
    task's predictions); returns their metrics."""
    from safetensors.torch import load_model

    path = lp.ctx.run.checkpoints / f"step-{best.step:08d}"
    if not (path / "state.json").is_file():
        raise JobError(
            f"the best model's checkpoint {path.name} is missing, so load_best_model_at_end cannot load it",
            "resume the run without load_best_model_at_end (--accept-changes), or start a new run",
        )
    load_model(lp.model, str(path / "model.safetensors"))
    metrics = run_evaluation(lp, int(best.epoch or 0))
    lp.ctx.log(
        f"load_best_model_at_end: the final model is the best evaluation's ({best.metric} {best.value:.6g} "
        f"at epoch {best.epoch:g}, step {best.step}), from {path.name}"
    )
    return metrics


def checkpoint(lp: Loop, state: dict, window: Window) -> None:
    """Rank 0 saves ``state`` with the weights, optimizer and every rank's RNG; all ranks wait for it.

    A non-finite loss since the last NaN check fails the job first: its step was applied, so the
    weights may be NaN, and a resume would load them.
    """
    check_finite(lp, window)
    dist = lp.dist
    rank_rng = dist.gather(rank_rng_state(lp.device)) if dist.on else None
    if dist.main:
        exp = lp.ctx.exp
        best = lp.best.step if lp.best is not None and exp.load_best_model_at_end else None
        save_checkpoint(
            lp.ctx,
            lp.model,
            lp.optimizer,
            lp.scheduler,
            state,
            keep=exp.save_total_limit,
            rank_rng=rank_rng,
            scaler=lp.scaler,
            protect=best,
        )
    lp.saves.saved(state["global_step"])
    dist.barrier()


def checkpoint_mid_epoch(lp: Loop, window: Window, epoch: int, batch: int) -> None:
    """A checkpoint between two optimizer steps, logging window included (skipped if this step has one)."""
    if lp.step == lp.saves.last_step:
        return
    checkpoint(lp, lp.snapshot(epoch, batch) | window.checkpoint_state(lp.dist), window)


def control(lp: Loop, window: Window, epoch: int, batch: int) -> None:
    """Before each optimizer step: pause/cancel requests, stop signals and the save policy.

    Rank 0 reads the requests (one ``os.stat``; blocking while paused) and decides. Distributed, every rank
    follows its decision (one broadcast, a host sync) every :data:`CONTROL_EVERY` steps, so the CPU can
    queue steps ahead in between; ``save_steps`` needs no broadcast (every rank counts steps). A cancel
    or stop signal saves a checkpoint, then raises.
    """
    code, stop_exc, dist = 0, None, lp.dist
    if dist.on and lp.step % CONTROL_EVERY:
        code = int(lp.saves.due_steps(lp.step))
    else:
        if dist.main:
            try:
                if dist.on:
                    lp.ctx.poll(partial(dist.broadcast, PAUSED, lp.device))
                else:
                    lp.ctx.poll()
                code = int(lp.saves.due(lp.step))
            except Cancelled as exc:  # Interrupted (a stop signal) included
                code, stop_exc = 2, exc
        code = dist.broadcast(code, lp.device)
        while code == PAUSED:  # the other ranks, while rank 0 is paused
            code = dist.broadcast(0, lp.device)
    if code:
        checkpoint_mid_epoch(lp, window, epoch, batch)
    if code == 2:
        raise stop_exc or Cancelled()


def train_step(lp: Loop, window: Window, epoch: int, b: int, n_batches: int) -> tuple[int, bool]:
    """One optimizer step from micro-batch ``b`` on: (the next micro-batch, whether the step was taken).

    A step is ``gradient_accumulation_steps`` micro-batches (this rank's share: batch b*world + rank),
    each run as ``lp.split`` pieces (``auto_find_batch_size``) whose losses average to the micro-batch's.
    """
    import torch

    exp, dist, spec, scaler = lp.ctx.exp, lp.dist, lp.spec, lp.scaler
    micro_end = min(b + exp.gradient_accumulation_steps, n_batches)
    n_micro = micro_end - b
    step_loss = torch.zeros((), dtype=torch.float32, device=lp.device)  # this step's mean loss (no host sync)
    step_parts: dict = {}
    for mb in range(b, micro_end):
        batch = spec.get_batch(epoch, mb * dist.world + dist.rank)
        window.tokens += batch.pop("n_tokens")
        rows = batch.pop("n_samples")
        window.samples += rows
        pieces = split_batch(batch, rows, lp.split)
        for i, piece in enumerate(pieces):
            piece = {k: v.to(lp.device, non_blocking=True) for k, v in piece.items()}
            last_micro = lp.forward is None or (mb == micro_end - 1 and i == len(pieces) - 1)
            with contextlib.nullcontext() if last_micro else lp.forward.no_sync():
                with lp.autocast():
                    loss, parts = spec.loss(lp.model, piece) if lp.forward is None else lp.forward(piece)
                weight = n_micro * len(pieces)
                scaled = loss / weight
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
            step_loss += loss.detach().float() / weight
            for k, v in parts.items():
                step_parts[k] = step_parts.get(k, 0) + v.detach().float() / weight
    bad = ~torch.isfinite(step_loss)
    # host sync per step: the price of skipping exactly the bad step
    if exp.nan_policy == "skip" and bool(dist.sum_(bad.long().clone())):
        lp.optimizer.zero_grad(set_to_none=True)
        lp.ctx.log(f"step {lp.step + 1}: non-finite loss, step skipped", "warning")
        return micro_end, False  # its loss never enters the window (its tokens still count towards throughput)
    window.add_step(step_loss, step_parts)
    if scaler is not None:
        scaler.unscale_(lp.optimizer)  # clip (and report) the true gradients, not the scaled ones
    if exp.max_grad_norm > 0:
        norm = torch.nn.utils.clip_grad_norm_(lp.model.parameters(), exp.max_grad_norm).detach().float()
        # fp16: an overflowed step (inf norm) is skipped by the scaler; it adds 0, not inf, to the logged mean
        window.grad_norm += norm if scaler is None else torch.nan_to_num(norm, nan=0.0, posinf=0.0)
    if scaler is not None:
        scaler.step(lp.optimizer)  # skipped when the fp16 gradients overflowed; update() then lowers the scale
        scaler.update()
    else:
        lp.optimizer.step()
    lp.scheduler.step()
    lp.optimizer.zero_grad(set_to_none=True)
    lp.step += 1
    lp.session_steps += 1
    window.steps += 1
    window.nonfinite += bad.long()
    return micro_end, True


def check_finite(lp: Loop, window: Window) -> None:
    """Fail the job once a step's loss was NaN/inf (host sync: called every few steps, not every step)."""
    if int(lp.dist.sum_(window.nonfinite.clone()).item()) > 0:
        raise JobError(
            f"loss became NaN/inf by step {lp.step}",
            'lower learning_rate, raise warmup, or set nan_policy = "skip"',
        )


def log_window(lp: Loop, window: Window, epoch: float) -> None:
    """Emit StepLogged with the window's means (all ranks' sums), then start a new window."""
    import torch

    exp, dist = lp.ctx.exp, lp.dist
    # The host sync of the loop: once per logging interval (plus the NaN check). Loss and parts are
    # every rank's mean, throughput their sum, memory their maximum (the rank nearest to running out).
    names = sorted(window.parts)
    totals = torch.tensor(
        [window.loss.item(), float(window.tokens), float(window.samples), memory_mb(lp.device)]
        + [window.parts[k].item() for k in names],
        dtype=torch.float64,
        device=lp.device,
    )
    peak = dist.max_(totals[3:4].clone()).item()
    totals = dist.sum_(totals)
    loss = totals[0].item() / dist.world / window.steps
    now = time.perf_counter()
    dt = max(now - window.t0, 1e-9)
    rate = (now - lp.session_t0) / max(lp.session_steps, 1)
    lp.ctx.emit(
        StepLogged(
            step=lp.step,
            total_steps=lp.total_steps,
            epoch=epoch,
            loss=loss,
            learning_rate=lp.scheduler.get_last_lr()[0],
            parts={k: totals[4 + i].item() / dist.world / window.steps for i, k in enumerate(names)},
            grad_norm=(window.grad_norm.item() / window.steps) if exp.max_grad_norm > 0 else None,
            tokens_per_s=totals[1].item() / dt,
            samples_per_s=totals[2].item() / dt,
            eta_s=rate * (lp.total_steps - lp.step),
            memory_mb=peak,
        )
    )
    window.logged(loss, now)


def evaluate_in_epoch(lp: Loop, window: Window, epoch: int, b: int, n_batches: int) -> dict:
    """An ``eval_steps`` evaluation inside an epoch, at its fraction ``epoch + b / n_batches``.

    The training steps before it are logged first (the curve reaches the evaluation). With
    ``load_best_model_at_end``, or when training stops here, a checkpoint follows: the best
    weights and the decision to stop survive a kill.
    """
    check_finite(lp, window)  # never evaluate (or keep) weights a NaN step has reached
    at = epoch + b / n_batches
    if window.steps:
        log_window(lp, window, at)
    metrics = evaluate(lp, round(at, 4), window.epoch_loss())
    if lp.stopped is not None or lp.ctx.exp.load_best_model_at_end:
        checkpoint_mid_epoch(lp, window, epoch, b)
    return metrics


def end_epoch(lp: Loop, window: Window, epoch: int, last: bool) -> dict | None:
    """After epoch ``epoch``: evaluate (each epoch, or the last one), record its row, save a checkpoint.

    Returns the evaluation's metrics (None when this epoch is not evaluated).
    """
    metrics = None
    check_finite(lp, window)  # neither evaluate nor save weights a NaN step has reached
    if lp.spec.eval_each_epoch or last:
        metrics = evaluate(lp, epoch + 1, window.epoch_loss())
    else:
        row = {"epoch": epoch + 1, "step": lp.step, "train_loss": window.epoch_loss()}
        lp.history.append(row | {"elapsed_s": round(lp.elapsed(), 3)})
    checkpoint(lp, lp.snapshot(epoch + 1, 0), window)
    return metrics


def save_final_model(lp: Loop) -> None:
    """Rank 0 writes ``model/`` through a temporary folder (a full disk fails the job clearly)."""
    if lp.spec.save_final is None or not lp.dist.main:
        return
    final, tmp = lp.ctx.run.path / "model", lp.ctx.run.path / ".model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    with disk_full_is_a_job_error(tmp, "the final model"):
        lp.spec.save_final(lp.model, tmp)
    follow_umask(tmp)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)


# -- the loop -------------------------------------------------------------------


def train(ctx: TaskContext, spec: TaskSpec, device, amp_dtype=None) -> dict:
    """Train ``spec.model``: optimizer steps with logging windows, control between steps, epochs with evaluations.

    With ``auto_find_batch_size`` an out-of-memory error in training splits the micro-batches and
    starts again from the last checkpoint (or the start); with ``load_best_model_at_end`` the final
    model is the best evaluation's.
    """
    lp, state = start_loop(ctx, spec, device, amp_dtype)
    start = StartPoint.take(lp) if ctx.exp.auto_find_batch_size else None
    while True:
        error = ""
        try:
            metrics = train_epochs(lp, state)
        except Exception as exc:
            if start is None or not is_out_of_memory(exc):
                raise
            error = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        if not error or start is None:  # (outside the except block: the failed step's tensors are freed first)
            break
        state = recover_from_oom(lp, error, start)
    metrics, last = final_metrics(lp, metrics)
    save_final_model(lp)
    lp.dist.barrier()
    out = _results(lp, metrics)
    if lp.best is not None:
        out["best"] = lp.best.results() | {"loaded": bool(ctx.exp.load_best_model_at_end and lp.best.step)}
    if last is not None:
        out["last_eval"] = last
    if lp.stopped is not None:
        out["stopped_early"] = lp.stopped
    return out


def _results(lp: Loop, metrics: dict) -> dict:
    """What training returns: the final model's metrics as ``final``, the evaluation history, counts."""
    return {
        "final": {k: v for k, v in metrics.items() if k not in ("epoch", "step")},
        "history": lp.history,
        "global_step": lp.step,
        "elapsed_s": round(lp.elapsed(), 3),
        "world_size": lp.dist.world,
    }


def train_epochs(lp: Loop, state: dict) -> dict:
    """The epochs from ``state`` on; returns the last evaluation's metrics."""
    ctx, exp = lp.ctx, lp.ctx.exp
    if lp.spec.eval_before and not lp.history:
        evaluate(lp, 0, None)
    lp.model.train()
    workers = f" x {lp.dist.world} processes" if lp.dist.on else ""
    ctx.emit(PhaseStarted(phase="train", detail=f"{lp.total_steps} optimizer steps on {lp.device}{workers}"))
    nan_every = min(exp.logging_steps, 8)  # NaN/inf detection: a host sync every few steps, not every step
    window = Window.resumed(state, lp.dist, lp.device)
    lp.session_t0 = window.t0 = time.perf_counter()
    metrics: dict = lp.history[-1] if lp.history else {}
    stop = False
    # A checkpoint at the last step (e.g. the attempt died while saving the final model), or one after
    # training was stopped (early stopping), leaves nothing to train.
    done = lp.step >= lp.total_steps or lp.stopped is not None
    for epoch in range(exp.epochs if done else int(state["epoch"]), exp.epochs):
        n_batches = lp.n_batches(epoch)
        b = int(state["batch"]) if epoch == int(state["epoch"]) else 0
        if b == 0:
            window.new_epoch()
        lp.optimizer.zero_grad(set_to_none=True)
        while b < n_batches and lp.stopped is None:
            control(lp, window, epoch, b)
            b, stepped = train_step(lp, window, epoch, b, n_batches)
            if not stepped:
                continue
            log_now = lp.step % exp.logging_steps == 0 or b >= n_batches or lp.step >= lp.total_steps
            if log_now or lp.step % nan_every == 0:
                check_finite(lp, window)
            if log_now:
                log_window(lp, window, epoch + b / n_batches)
            if lp.step >= lp.total_steps:
                stop = True
                break
            if exp.eval_steps and lp.step % exp.eval_steps == 0 and b < n_batches:
                metrics = evaluate_in_epoch(lp, window, epoch, b, n_batches)
        if lp.stopped is not None:  # stopped inside this epoch: it has no end
            break
        evaluated = end_epoch(lp, window, epoch, last=stop or epoch == exp.epochs - 1)
        metrics = metrics if evaluated is None else evaluated
        state["batch"] = 0
        if stop or lp.stopped is not None:
            break
        # A sweep's pruner heard an evaluation (rank 0; the other ranks learnt it in evaluate) and wants
        # the trial stopped: every rank stops here, after the epoch's checkpoint, and the run keeps what
        # it has (its status: pruned).
        if evaluated is not None and ctx.prune_reason:
            raise Pruned(ctx.prune_reason, _results(lp, metrics))
    return metrics


def final_metrics(lp: Loop, metrics: dict) -> tuple[dict, dict | None]:
    """The final model's metrics, and the last evaluation (None unless the best model replaced it).

    ``load_best_model_at_end`` with a best evaluation before the last: its weights are loaded and
    evaluated again (the task's predictions follow the final model). A resume that starts after the
    last evaluation evaluates the restored weights again (:func:`evaluate_again`).
    """
    best, last = lp.best, last_evaluation(lp)
    if lp.ctx.exp.load_best_model_at_end and best is not None and best.step is not None and last is not None:
        if best.step != last["step"]:
            return (load_best_model(lp, best) if lp.dist.main else {}), last
    if not lp.evaluated and lp.dist.main:
        metrics = evaluate_again(lp, int(lp.history[-1]["epoch"]) if lp.history else 0)
    return metrics, None


@dataclass
class StartPoint:
    """The loop's state before its first step, in memory: where ``auto_find_batch_size`` starts again
    when no checkpoint exists yet. ``events_offset``: the size of events.jsonl then."""

    model: dict
    optimizer: dict
    scheduler: dict
    rng: Any
    events_offset: int

    @classmethod
    def take(cls, lp: Loop) -> StartPoint:
        import copy

        import torch

        weights = {k: v.detach().to("cpu", copy=True) for k, v in lp.model.state_dict().items()}
        size = os.path.getsize(lp.ctx.run.events_path) if lp.ctx.run.events_path.exists() else 0
        return cls(
            weights,
            copy.deepcopy(lp.optimizer.state_dict()),
            copy.deepcopy(lp.scheduler.state_dict()),
            torch.get_rng_state(),
            size,
        )

    def restore(self, lp: Loop) -> None:
        import torch

        lp.model.load_state_dict(self.model)
        lp.optimizer.load_state_dict(self.optimizer)
        lp.scheduler.load_state_dict(self.scheduler)
        torch.set_rng_state(self.rng)
        lp.ctx.writer.discard_events(self.events_offset)


def recover_from_oom(lp: Loop, error: str, start: StartPoint) -> dict:
    """Out of memory in training with ``auto_find_batch_size``: halve the per-device batch (split the
    micro-batches), record it (config.json first, so a kill now still resumes with it), go back to the
    last checkpoint (or the start) and say so; the state to go on from. Below a batch of 1: a JobError."""
    import torch

    exp = lp.ctx.exp
    split = next_split(exp.batch_size, lp.split)
    if split is None:
        raise JobError(
            f"out of memory even with a per-device batch of 1 (auto_find_batch_size): {error}",
            "shorten max_seq_length, pick a smaller model, use bf16 precision, or run on a device with more memory",
        )
    lp.optimizer.zero_grad(set_to_none=True)
    if lp.device.type == "cuda":
        torch.cuda.empty_cache()
    failed_at = lp.step
    record = record_split(lp.ctx.run, exp, split, failed_at, error)
    old_batch = per_device_batch(exp.batch_size, lp.split)
    lp.split = split
    if lp.ctx.run.checkpoints_newest_first():
        state = at_state(lp, resume(lp))
    else:
        start.restore(lp)
        state = at_state(lp, {})
    batch, accum = record["batch_size"], record["gradient_accumulation_steps"]
    lp.ctx.emit(BatchReduced(step=failed_at, batch_size=batch, gradient_accumulation_steps=accum, error=error))
    lp.ctx.log(
        f"out of memory at step {failed_at + 1}: per-device batch {old_batch} -> {batch}, gradient accumulation "
        f"{accum} (effective batch {exp.batch_size * exp.gradient_accumulation_steps} unchanged); "
        f"restarted from step {lp.step}",
        "warning",
    )
    return state
