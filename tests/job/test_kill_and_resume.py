"""Jobs under faults from outside and inside: a killed process resumes, a failing job says why.

- SIGKILL from outside: a real ``lmconsole run`` process killed three times at random training
  steps, each time resumed with ``--resume``: one run, every step logged once, the perplexities
  of an uninterrupted run;
- faults inside a job: a NaN loss stops it within a few steps (``nan_policy = "skip"`` finishes
  instead), out of memory fails with a hint and keeps the checkpoint, a failed job blocks its
  dependants while the queue goes on;
- preflight: an unwritable runs directory, too little disk, a sequence length the model cannot
  take, an unreachable Hub, each a message;
- secrets: the Hub token never lands in a run directory, a model card, a staged push or an error;
- fuzzed manifests (hypothesis): random tables, mutated text and any nesting depth give named
  messages, never a traceback; whatever the validator accepts is finite, in range and usable.

The kill here lands wherever the clock puts it (between steps, almost always);
tests/job/test_kill_at_write.py places it on each write into the runs directory instead, and
covers the damaged files such a kill leaves.
"""

import json
import random
import signal
import time
from pathlib import Path

import pytest
from support.manifests import CLASSIFY, PRETRAIN, experiment, manifest_text, run_cli, start_cli, write_manifest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.job.runner import run_experiment
from engine.manifest import EXPERIMENT_KEYS, ManifestError, parse_text
from engine.queue.jobqueue import JobQueue
from engine.store.runs import RunStore, read_events
from support.micro import micro_text_pipeline

REPO = Path(__file__).resolve().parents[2]




def manifest(tmp_path, extra="", runs="runs"):
    path = write_manifest(tmp_path, micro_text_pipeline(tmp_path / runs, extra))
    return parse_text(path.read_text(), path), path


# -- crash and kill ----------------------------------------------------------------


def _steps(run):
    rows, _ = read_events(run.events_path)
    return [r["step"] for r in rows if r.get("event") == "StepLogged"]


def test_sigkill_three_times_then_resume_matches_uninterrupted(tmp_path):
    m, path = manifest(tmp_path)
    store = RunStore(m.runs_dir)
    rng = random.Random(1234)
    proc = start_cli(path, "run", "pre")
    for attempt in range(3):
        # wait for a random number of new optimizer steps, then kill without warning
        deadline = time.time() + 120
        while time.time() < deadline and store.latest("pre") is None:
            time.sleep(0.05)
        run = store.latest("pre")
        before = len(_steps(run))
        target = before + rng.randint(2, 10)
        while time.time() < deadline and len(_steps(run)) < target and proc.poll() is None:
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read().decode()
        assert run.status()["status"] == "running"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        st_ = run.status()
        assert st_["status"] == "interrupted", st_
        assert "resume" in st_["reason"]
        proc = start_cli(path, "run", "pre", "--resume")
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()

    assert len(store.runs("pre")) == 1, "resumed the same run every time"
    run = store.latest("pre")
    assert run.status()["status"] == "finished"
    for line in run.events_path.read_text().splitlines():
        json.loads(line)  # every line parses
    steps = _steps(run)
    assert steps == list(range(1, steps[-1] + 1)), "no duplicated or missing steps"
    table = run.read_table("epochs")
    assert table.column("epoch") == [0, 1, 2, 3]

    ref = run_experiment(parse_text(micro_text_pipeline(tmp_path / "ref"), path), "pre")
    assert ref.read_table("epochs").column("mlm_perplexity") == pytest.approx(table.column("mlm_perplexity"), rel=1e-3)
    assert ref.results()["global_step"] == run.results()["global_step"]


# -- job faults ---------------------------------------------------------------------


def _inject(monkeypatch, fail):
    import engine.tasks.pretrain as pre

    real = pre.mlm_nsp_forward
    calls = {"n": 0}

    def forward(model, batch):
        calls["n"] += 1
        return fail(calls["n"], real, model, batch)

    monkeypatch.setattr(pre, "mlm_nsp_forward", forward)


def test_nan_loss_stops_job_within_a_few_steps(tmp_path, monkeypatch):
    def fail(n, real, model, batch):
        loss, parts = real(model, batch)
        return (loss * float("nan"), parts) if n >= 12 else (loss, parts)

    _inject(monkeypatch, fail)
    m, _ = manifest(tmp_path, extra="logging_steps = 4")
    run = run_experiment(m, "pre")
    st_ = run.status()
    assert st_["status"] == "failed" and "NaN" in st_["reason"] and "nan_policy" in st_["reason"]
    last = max(_steps(run) or [0])
    assert last < 12 + 4
    assert run.last_checkpoint() is not None, "the epoch-1 checkpoint is kept"


def test_nan_policy_skip_finishes(tmp_path, monkeypatch):
    def fail(n, real, model, batch):
        loss, parts = real(model, batch)
        return (loss * float("nan"), parts) if n in (3, 4) else (loss, parts)

    _inject(monkeypatch, fail)
    m, _ = manifest(tmp_path, extra='nan_policy = "skip"\nepochs = 1')
    run = run_experiment(m, "pre")
    assert run.status()["status"] == "finished"
    warnings = [e.message for e in run.events() if type(e).__name__ == "LogEmitted" and e.level == "warning"]
    assert sum("skipped" in w for w in warnings) == 2


def test_oom_fails_with_hint_and_keeps_checkpoint(tmp_path, monkeypatch):
    def fail(n, real, model, batch):
        if n > 10:
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(model, batch)

    _inject(monkeypatch, fail)
    m, _ = manifest(tmp_path)
    run = run_experiment(m, "pre")
    st_ = run.status()
    assert st_["status"] == "failed"
    assert st_["reason"].startswith("out of memory") and "batch_size" in st_["reason"]
    failed = [e for e in run.events() if type(e).__name__ == "JobFailed"][0]
    assert "Traceback" in failed.traceback and "\n" not in failed.reason
    assert run.last_checkpoint() is not None


def test_failed_job_blocks_dependants_and_queue_goes_on(tmp_path, monkeypatch):
    def fail(n, real, model, batch):
        raise ValueError("corrupt batch")

    _inject(monkeypatch, fail)
    m, _ = manifest(tmp_path)
    q = JobQueue(m, runner=run_experiment)  # jobs in threads of this process: the fault injection reaches them
    jobs = q.submit(["cls", "params"])
    q.wait(300)
    by = {j.experiment: j for j in q.jobs}
    assert by["pre"].status == "failed" and "corrupt batch" in by["pre"].reason
    assert by["cls"].status == "blocked" and "pre" in by["cls"].reason
    assert by["params"].status == "finished"


# -- preflight ------------------------------------------------------------------------


def test_preflight_runs_dir_not_writable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    m, _ = manifest(tmp_path)
    from engine.errors import JobError
    from engine.job.preflight import check_writable

    with pytest.raises(JobError, match="cannot write to"):
        check_writable(blocker / "runs")


def test_preflight_disk_space_message():
    from engine.errors import JobError
    from engine.job.preflight import check_space

    with pytest.raises(JobError, match=r"not enough disk space .* GiB needed"):
        check_space(Path("."), 110_000_000, free_bytes=100 * 2**20)


@pytest.mark.parametrize("fault", ["not writable", "disk full"])
def test_a_job_runs_preflight_before_any_tokenisation(tmp_path, monkeypatch, fault):
    """The checks above are wired in: a job whose runs directory cannot be written, or whose disk
    has no room for its checkpoints, fails with that message before its tokenizer or data are built."""
    import collections

    import engine.job.preflight as preflight
    import engine.tasks.pretrain as pretrain

    built = []
    monkeypatch.setattr(pretrain, "pretrain_tokenizer", lambda *a, **k: built.append("tokenizer"))
    monkeypatch.setattr(pretrain, "build_data", lambda *a, **k: built.append("data"))
    if fault == "not writable":  # as root, permissions do not stop a write: fail the probe file instead

        def refuse(*a, **k):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(preflight.tempfile, "NamedTemporaryFile", refuse)
        expected = "cannot write to"
    else:
        usage = collections.namedtuple("usage", "total used free")
        monkeypatch.setattr(preflight.shutil, "disk_usage", lambda folder: usage(2**30, 2**30, 2**10))
        expected = "not enough disk space"
    m, _ = manifest(tmp_path)
    run = run_experiment(m, "pre")
    st_ = run.status()
    assert st_["status"] == "failed" and expected in st_["reason"], st_
    assert built == [], f"{built} built before preflight failed"


def test_preflight_seq_length_and_unreachable_hub(tmp_path):
    m, _ = manifest(tmp_path, extra="max_seq_length = 1024")
    t0 = time.time()
    run = run_experiment(m, "pre")
    st_ = run.status()
    assert st_["status"] == "failed" and "max_seq_length = 1024 exceeds the model's 512 positions" in st_["reason"]
    text = micro_text_pipeline(tmp_path / "r2").replace('"embedded:wikitext"', '"someone/not-mirrored"')
    run = run_experiment(parse_text(text, tmp_path / "x.toml"), "pre")
    st_ = run.status()
    assert st_["status"] == "failed"
    assert "someone/not-mirrored" in st_["reason"] and "mirror" in st_["reason"]
    assert time.time() - t0 < 30
    assert not any(type(e).__name__ == "StepLogged" for e in run.events())


# -- secrets ---------------------------------------------------------------------------

FAKE = "hf_FAKE-token-for-tests-ABCDEFGHIJKLMNOPQRSTUV"  # not token-shaped: no scanner mistakes it for a real one


def test_token_never_written(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", FAKE)

    def fail(n, real, model, batch):
        if n == 4:  # only the first run fails, with the token in its error message
            raise RuntimeError(f"401 Client Error for token {FAKE}")
        return real(model, batch)

    _inject(monkeypatch, fail)
    m, path = manifest(tmp_path, extra="epochs = 1")
    run_experiment(m, "params")
    failed = run_experiment(m, "pre")
    assert failed.status()["status"] == "failed"
    out = run_cli(path, "export", "--all", "--out", str(tmp_path / "exports"))
    assert out.returncode == 0, out.stderr
    assert FAKE not in out.stdout + out.stderr
    # push (dry run, and through an HfApi stand-in) writes a model card and stages files
    from engine.hub.publish import push

    ok = run_experiment(m, "pre")
    assert ok.status()["status"] == "finished"
    out = run_cli(path, "push", f"pre/{ok.run_id}", "--repo", "alice/x", "--dry-run", "--out", str(tmp_path / "dry"))
    assert out.returncode == 0 and FAKE not in out.stdout + out.stderr, out.stderr

    class Api:
        def create_repo(self, *a, **k):
            pass

        def upload_folder(self, **k):
            return None

    push(ok, "alice/x", api=Api())
    # the push step of a study: the Hub is unreachable (HF_HUB_OFFLINE), then an upload error quotes the token
    step = run_experiment(m, "push-pre")
    assert step.status()["status"] == "failed" and "unreachable" in step.status()["reason"]
    assert (step.path / "staged" / "model.safetensors").exists()

    class LeakyApi(Api):
        def upload_folder(self, **k):
            raise RuntimeError(f"403 Forbidden for {FAKE}")

    monkeypatch.setattr("engine.hub.publish.hub_api", lambda later="": LeakyApi())
    leaky = run_experiment(m, "push-pre")
    assert leaky.status()["status"] == "failed" and "<redacted>" in leaky.status()["reason"]
    scanned = 0
    for f in tmp_path.rglob("*"):
        if f.is_file():
            scanned += 1
            assert FAKE.encode() not in f.read_bytes(), f
    assert scanned > 20
    assert "<redacted>" in failed.status()["reason"]


# -- fuzzed manifests -------------------------------------------------------------------

SHIPPED = (REPO / "experiments.toml").read_text()

values = st.one_of(
    st.integers(-5, 10**6),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.booleans(),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(sorted(EXPERIMENT_KEYS) + ["bogus", "Name", ""]), values, max_size=8))
def test_random_experiment_tables_never_traceback(table):
    from engine.manifest import parse_data

    try:
        parse_data({"experiment": [table]})
    except ManifestError as exc:
        assert exc.problems and all(p.strip() for p in exc.problems)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_manifest_text_never_traceback(data):
    text = SHIPPED
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(text) - 1))
        op = data.draw(st.sampled_from(["delete", "insert", "dup"]))
        if op == "delete":
            text = text[:i] + text[i + data.draw(st.integers(1, 30)) :]
        elif op == "insert":
            text = text[:i] + data.draw(st.sampled_from(['"', "=", "[", "]", "\n", "x", "1.5", "run:", "-"])) + text[i:]
        else:
            j = min(len(text), i + data.draw(st.integers(1, 200)))
            text = text[:j] + text[i:j] + text[j:]
    try:
        parse_text(text, "experiments.toml")
    except ManifestError as exc:
        assert exc.problems and all(p.strip() for p in exc.problems)


# -- accepted values: NaN/inf, out of range, nesting depth, failures that only show at run time -----------

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308, 5.0, 7, 2**32, 2**63]),
)
NUMERIC = sorted(k for k, v in EXPERIMENT_KEYS.items() if v.type in ("int", "float"))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(NUMERIC), numbers, min_size=1, max_size=6))
def test_accepted_numbers_are_finite_in_range_and_usable_at_run_time(values):
    """Whatever the validator accepts must not fail later, at run time, with a message that names no key."""
    import math
    import random as _random

    import torch

    from engine.manifest import parse_data

    table = {"name": "p", "task": "pretrain", "model": "bert-micro", "dataset": "embedded:wikitext", **values}
    try:
        m = parse_data({"experiment": [table]})
    except ManifestError as exc:
        assert exc.problems and all(p.strip() and "\n" not in p for p in exc.problems)
        for p in exc.problems:  # every problem names its key
            assert any(f".{k}" in p for k in values), p
        return
    exp = m.experiments[0]
    for k in NUMERIC:
        v = getattr(exp, k)
        if isinstance(v, float):
            assert math.isfinite(v), (k, v)
        key = EXPERIMENT_KEYS[k]
        if key.minimum is not None:
            assert v >= key.minimum, (k, v)
        if key.maximum is not None:
            assert v <= key.maximum, (k, v)
    assert 0 <= exp.mlm_probability <= 1 and 0 <= exp.short_seq_prob <= 1
    # what a job does with the values first, through the engine's own code: seeds, the
    # optimizer and its warmup/decay schedule for a few steps (finite learning rates, no error)
    from engine.train.loop import make_schedule

    torch.manual_seed(exp.seed)
    _random.Random(exp.seed * 1000 + 1)
    param = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.AdamW([param], lr=exp.learning_rate, weight_decay=exp.weight_decay)
    total = 100
    warmup = int(exp.warmup * total) if exp.warmup < 1 else int(exp.warmup)  # as engine.train.loop does
    sched = make_schedule(opt, warmup, total)
    for _ in range(3):
        param.grad = torch.ones(2)
        if exp.max_grad_norm:
            torch.nn.utils.clip_grad_norm_([param], exp.max_grad_norm)
        opt.step()
        sched.step()
        assert all(math.isfinite(g["lr"]) and g["lr"] >= 0 for g in opt.param_groups), values


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 6000), st.sampled_from(["[", "{ a = ", "[[", "x."]))
def test_any_nesting_depth_is_a_message_not_recursion_error(depth, opener):
    closer = {"[": "]", "{ a = ": " }", "[[": "]]", "x.": ""}[opener]
    if opener == "x.":
        text = "x" + ".x" * depth + " = 1\n"
    elif opener == "[[":
        text = "v = " + "[" * depth + "1" + "]" * depth + "\n"
    else:
        text = "v = " + opener * depth + "1" + closer * depth + "\n"
    try:
        parse_text(text, "experiments.toml")
    except ManifestError as exc:
        assert exc.problems and all(p.strip() for p in exc.problems)
