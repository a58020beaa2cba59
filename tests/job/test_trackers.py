"""report_to: one tiny job writes to TensorBoard, W&B (offline), MLflow and trackio; each is read
back with that tracker's own reader and must hold the same numbers as our events.jsonl."""

from __future__ import annotations

import importlib
import socket
import struct

import pytest
from support.manifests import PRETRAIN, experiment, write_manifest

from engine.events import EvalFinished, LogEmitted, RunFinished, StepLogged
from engine.job.runner import run_experiment
from engine.job.trackers import eval_metrics, final_metrics, is_system_event, step_metrics, system_metrics
from engine.manifest import load


def tracked(*trackers: str, epochs: int = 2) -> str:
    """A bert-micro pretraining reporting to ``trackers``."""
    return experiment(PRETRAIN, epochs=epochs, learning_rate=1e-3, max_eval_samples=32, report_to=list(trackers))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _isolate(monkeypatch, root):
    monkeypatch.setenv("TRACKIO_DIR", str(root / "trackio"))
    monkeypatch.setenv("TRACKIO_PROJECT", f"lmconsole-test-{root.name}")
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(root / "wandb-home"))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # No W&B server: the tracker must choose offline mode by itself.
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("trackers")
    mp = pytest.MonkeyPatch()
    try:
        _isolate(mp, root)  # before the imports: trackio reads TRACKIO_DIR when imported
        for mod in ("tensorboard", "wandb", "mlflow", "trackio"):
            # the test extra installs all four: one that does not import is an error naming it, not a skip
            try:
                importlib.import_module(mod)
            except Exception as exc:  # noqa: BLE001 - a broken install raises more than ImportError
                pytest.fail(f"tracker {mod!r} does not import ({type(exc).__name__}: {exc}); pip install -e '.[test]'")
        path = write_manifest(
            root,
            tracked("tensorboard", "wandb", "mlflow", "trackio"),
            settings=f'runs_dir = "{root / "runs"}"',
        )
        m = load(path)
        run = run_experiment(m, "pre")
        yield m, run, root
    finally:
        mp.undo()


def _expected(run):
    evs = run.events()
    steps = {e.step: step_metrics(e) for e in evs if isinstance(e, StepLogged)}
    evals = {e.step: eval_metrics(e) for e in evs if isinstance(e, EvalFinished)}
    final = final_metrics(next(e for e in evs if isinstance(e, RunFinished)).results)
    return evs, steps, evals, final


def _system_values(run) -> list[float]:
    """``system/host/cpu_percent`` of the job's SystemSampled events (one at the start, then every 30 s)."""
    return [system_metrics(e)["system/host/cpu_percent"] for e in run.events() if is_system_event(e)]


def test_job_finishes_and_events_carry_the_metrics(tracked_run):
    _, run, _ = tracked_run
    assert run.status()["status"] == "finished"
    evs, steps, evals, final = _expected(run)
    assert sorted(steps) == [2, 4, 6, 8]
    assert set(steps[2]) >= {"train/loss", "train/learning_rate", "train/tokens_per_s", "train/grad_norm"}
    assert sorted(evals) == [0, 4, 8] and "eval/mlm_perplexity" in evals[8]
    assert final["final/global_step"] == 8
    warnings = [e.message for e in evs if isinstance(e, LogEmitted) and e.level == "warning"]
    assert not warnings, warnings


def test_tensorboard_event_files(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, run, _ = tracked_run
    _, steps, evals, final = _expected(run)
    acc = EventAccumulator(str(run.path / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in ("train/loss", "train/learning_rate", "train/tokens_per_s", "train/grad_norm"):
        got = {s.step: s.value for s in acc.Scalars(tag)}
        assert got == pytest.approx({k: v[tag] for k, v in steps.items()}, rel=1e-6), tag
    got = {s.step: s.value for s in acc.Scalars("eval/mlm_perplexity")}
    assert got == pytest.approx({k: v["eval/mlm_perplexity"] for k, v in evals.items()}, rel=1e-6)
    assert {s.step: s.value for s in acc.Scalars("final/global_step")} == {8: 8.0}
    assert "final/elapsed_s" in tags
    system = _system_values(run)
    assert system and [s.value for s in acc.Scalars("system/host/cpu_percent")] == pytest.approx(system, rel=1e-6)
    config = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert '"learning_rate": 0.001' in config and '"report_to"' in config


def read_wandb_log(path):
    """Records of a W&B transaction log (``run-<id>.wandb``), parsed with wandb's own protobuf schema.

    wandb >= 0.2x no longer ships a Python reader (its Go core reads the file); the
    container is the LevelDB log format behind a 7-byte ``:W&B`` header: 32 KiB
    blocks of chunks (crc32 u32, length u16, type u8: 1 full, 2 first, 3 middle, 4 last).
    """
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    ident, magic, _version = struct.unpack("<4sHB", data[:7])
    assert ident == b":W&B" and magic == 0xBEE1
    pos, block, records, pending = 7, 32768, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:  # zero padding at the end of a block
            pos += left
            continue
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(pending)
            records.append(rec)
            pending = b""
    return records


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)  # W&B stores "train/loss" as the nested key [train, loss]


def test_wandb_offline_run_folder(tracked_run):
    import json

    _, run, _ = tracked_run
    evs, steps, evals, final = _expected(run)
    assert any(isinstance(e, LogEmitted) and "report_to wandb: offline" in e.message for e in evs)
    (folder,) = (run.path / "wandb").glob("offline-run-*")
    (log,) = folder.glob("run-*.wandb")
    records = read_wandb_log(log)
    kinds = [r.WhichOneof("record_type") for r in records]
    assert "exit" in kinds
    (run_rec,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    config = {_key(i): json.loads(i.value_json) for i in run_rec.config.update}
    assert config["learning_rate"] == 0.001 and config["run_id"] == run.run_id
    history = {}
    for r in records:
        if r.WhichOneof("record_type") == "history":
            row = {_key(i): json.loads(i.value_json) for i in r.history.item}
            history.setdefault(row.get("_step", r.history.step.num), {}).update(row)
    for step, metrics in steps.items():
        for tag in ("train/loss", "train/learning_rate", "train/tokens_per_s", "train/grad_norm"):
            assert history[step][tag] == pytest.approx(metrics[tag], rel=1e-9), (step, tag)
    for step, metrics in evals.items():
        assert history[step]["eval/mlm_perplexity"] == pytest.approx(metrics["eval/mlm_perplexity"], rel=1e-9)
    cpu = [row["system/host/cpu_percent"] for row in history.values() if "system/host/cpu_percent" in row]
    assert cpu == pytest.approx(_system_values(run), rel=1e-9)
    summary = {}
    for r in records:
        if r.WhichOneof("record_type") == "summary":
            summary.update({_key(i): json.loads(i.value_json) for i in r.summary.update})
    assert summary["final/global_step"] == final["final/global_step"]


def test_mlflow_store_through_its_client(tracked_run):
    from mlflow.tracking import MlflowClient

    m, run, root = tracked_run
    _, steps, evals, final = _expected(run)
    assert (root / "mlflow.db").exists()  # the default store: beside the manifest
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("pre")
    (mlrun,) = client.search_runs([exp.experiment_id])
    assert mlrun.info.run_name == run.run_id and mlrun.info.status == "FINISHED"
    assert mlrun.data.params["learning_rate"] == "0.001" and mlrun.data.params["epochs"] == "2"
    for tag in ("train/loss", "train/learning_rate", "train/tokens_per_s", "train/grad_norm"):
        got = {x.step: x.value for x in client.get_metric_history(mlrun.info.run_id, tag)}
        assert got == pytest.approx({k: v[tag] for k, v in steps.items()}, rel=1e-12), tag
    got = {x.step: x.value for x in client.get_metric_history(mlrun.info.run_id, "eval/mlm_perplexity")}
    assert got == pytest.approx({k: v["eval/mlm_perplexity"] for k, v in evals.items()}, rel=1e-12)
    assert mlrun.data.metrics["final/global_step"] == final["final/global_step"]
    cpu = client.get_metric_history(mlrun.info.run_id, "system/host/cpu_percent")
    assert [x.value for x in cpu] == pytest.approx(_system_values(run), rel=1e-12)


def test_trackio_local_store_through_its_api(tracked_run):
    import trackio
    from trackio.sqlite_storage import SQLiteStorage
    from trackio.utils import TRACKIO_DIR

    _, run, root = tracked_run
    assert TRACKIO_DIR == root / "trackio"  # the test's own store, not the user's
    project = f"lmconsole-test-{root.name}"
    _, steps, evals, final = _expected(run)
    (tk_run,) = list(trackio.Api().runs(project))
    assert tk_run.name == f"pre/{run.run_id}"
    assert tk_run.config["learning_rate"] == 0.001
    rows = SQLiteStorage.get_logs(project, tk_run.name)
    by_step: dict = {}
    for row in rows:
        by_step.setdefault(row["step"], {}).update(row)
    for step, metrics in steps.items():
        for tag in ("train/loss", "train/learning_rate", "train/tokens_per_s", "train/grad_norm"):
            assert by_step[step][tag] == pytest.approx(metrics[tag], rel=1e-12), (step, tag)
    for step, metrics in evals.items():
        assert by_step[step]["eval/mlm_perplexity"] == pytest.approx(metrics["eval/mlm_perplexity"], rel=1e-12)
    assert by_step[8]["final/global_step"] == final["final/global_step"]
    assert [r["system/host/cpu_percent"] for r in rows if "system/host/cpu_percent" in r] == pytest.approx(
        _system_values(run), rel=1e-12
    )


def test_a_failing_or_missing_tracker_warns_once_and_the_job_goes_on(tmp_path, monkeypatch):
    from engine.job import trackers

    class Broken(trackers.TrackerSink):
        name, module = "mlflow", "json"  # importable; fails on its first write
        calls = 0

        def log(self, metrics, step):
            Broken.calls += 1
            raise ConnectionError("quota exceeded\nsecond line")

    monkeypatch.setitem(trackers.SINKS, "mlflow", Broken)
    monkeypatch.setattr(trackers.TensorBoardSink, "module", "lmconsole_no_such_package")
    path = write_manifest(
        tmp_path,
        tracked("tensorboard", "mlflow", epochs=1),
        settings=f'runs_dir = "{tmp_path / "runs"}"',
    )
    run = run_experiment(load(path), "pre")
    assert run.status()["status"] == "finished"
    warnings = [e.message for e in run.events() if isinstance(e, LogEmitted) and e.level == "warning"]
    assert len(warnings) == 2, warnings
    assert "report_to tensorboard: the lmconsole_no_such_package package is not installed" in warnings[0]
    assert "pip install 'lmconsole[tensorboard]'" in warnings[0]
    assert (
        warnings[1].startswith("report_to mlflow: ConnectionError: quota exceeded;")
        and "training goes on" in warnings[1]
    )
    assert Broken.calls == 1  # switched off after the first failure
    assert sorted(e.step for e in run.events() if isinstance(e, StepLogged)) == [2, 4]


def test_events_to_tracker_calls_including_a_system_event():
    """What each tracker is handed, without a tracker library: the base class's translation.
    A SystemSampled event becomes its numeric fields, nested ones flattened with "/"."""
    from engine.events import StatusChanged, SystemSampled
    from engine.job import trackers

    calls = []

    class Recorder(trackers.TrackerSink):
        name = "recorder"

        def start(self):
            calls.append(("start", dict(self.config)))

        def log(self, metrics, step):
            calls.append(("log", step, metrics))

        def summary(self, metrics, step):
            calls.append(("summary", step, metrics))

        def close(self, status):
            calls.append(("close", status))

    class Exp:
        name, task = "pre", "pretrain"

        def to_dict(self):
            return {"name": "pre", "learning_rate": 0.001}

    class Run:
        run_id = "r1"

    said = []
    sink = Recorder(Run(), Exp(), None, lambda m, level: said.append((level, m)))
    sink.emit(
        StepLogged(
            step=2, epoch=0.5, loss=1.5, learning_rate=1e-3, grad_norm=0.7, tokens_per_s=900.0, parts={"mlm_loss": 1.0}
        )
    )
    sink.emit(SystemSampled(host={"cpu_percent": 55.0, "name": "node1"}, gpus=[{"util": 80, "name": "H100"}]))
    sink.emit(EvalFinished(epoch=1, step=4, split="test", metrics={"accuracy": 0.75, "note": "x", "ok": True}))
    sink.emit(RunFinished(status="finished", results={"accuracy": 0.75, "model": "path"}))
    sink.emit(StatusChanged(status="finished"))
    assert calls == [
        ("start", {"name": "pre", "learning_rate": 0.001, "run_id": "r1"}),
        (
            "log",
            2,
            {
                "train/loss": 1.5,
                "train/learning_rate": 1e-3,
                "train/epoch": 0.5,
                "train/grad_norm": 0.7,
                "train/tokens_per_s": 900.0,
                "train/mlm_loss": 1.0,
            },
        ),
        ("log", 2, {"system/host/cpu_percent": 55.0, "system/gpus/0/util": 80.0}),
        ("log", 4, {"eval/accuracy": 0.75, "eval/epoch": 1.0}),
        ("summary", 4, {"final/accuracy": 0.75}),
        ("close", "finished"),
    ]
    assert said == []


def test_wandb_mode_offline_without_server_or_key(tmp_path, monkeypatch):
    """The choice made before wandb.init: offline when the server is unreachable, or reachable
    but there is no API key (online would stop at a login prompt); WANDB_MODE always wins."""
    import http.server
    import threading

    from engine.hub import resolve as hub
    from engine.job import trackers

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    chosen = []

    class FakeWandb:
        class Settings:
            def __init__(self, **kw):
                pass

        @staticmethod
        def init(mode, **kw):
            chosen.append(mode)

    monkeypatch.setitem(__import__("sys").modules, "wandb", FakeWandb)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)

    class Exp:
        name, task = "pre", "pretrain"

        def to_dict(self):
            return {}

    class Run:
        run_id, path = "r1", tmp_path

    def mode_for(**env):
        hub._reachable.cache_clear()
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        sink = trackers.WandbSink(Run(), Exp(), None, lambda m, level: None)
        sink.start()
        return chosen[-1], sink._info

    try:
        mode, info = mode_for(WANDB_BASE_URL=f"http://127.0.0.1:{_closed_port()}")
        assert mode == "offline" and "no W&B server reachable" in info[0]
        mode, info = mode_for(WANDB_BASE_URL=f"http://127.0.0.1:{srv.server_address[1]}")
        assert mode == "offline" and "no W&B API key" in info[0]
        assert mode_for(WANDB_API_KEY="x" * 40)[0] == "online"
        assert mode_for(WANDB_MODE="disabled")[0] == "disabled"
    finally:
        srv.shutdown()
        srv.server_close()
