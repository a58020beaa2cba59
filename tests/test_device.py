"""Device strings: checked in the manifest where the manifest tells, per rank under a launcher, against
the GPUs a process sees. No GPU here: ``torch.cuda``'s availability and count are faked."""

import pytest
import torch
from support.manifests import PRETRAIN, experiment, manifest_text

from engine.device import device_problem, distributed_backend, pick_device
from engine.errors import JobError, ManifestError
from engine.manifest import parse_text


@pytest.fixture
def one_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for key in ("LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def test_the_manifest_refuses_device_strings_that_cannot_work(tmp_path):
    assert device_problem("cuda:1") == "" and device_problem("auto", "torchrun") == ""
    assert "not a device" in device_problem("gpu0")
    text = manifest_text(tmp_path / "runs", experiment(PRETRAIN, device="cuda:1", launcher="torchrun", nproc_per_node=2))
    with pytest.raises(ManifestError) as e:
        parse_text(text, tmp_path / "m.toml")
    assert "device: 'cuda:1' with launcher = \"torchrun\": each rank takes the GPU of its local rank" in str(e.value)


def test_cuda_n_must_be_a_gpu_this_process_sees(one_gpu):
    one_gpu.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert pick_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(JobError) as e:
        pick_device("cuda:1")
    assert "sees 1 GPU(s) (CUDA_VISIBLE_DEVICES=3)" in e.value.reason and 'device = "cuda"' in e.value.hint


def test_a_launched_rank_takes_the_gpu_of_its_local_rank(one_gpu):
    one_gpu.setenv("LOCAL_RANK", "1")
    one_gpu.setenv("WORLD_SIZE", "2")
    assert pick_device("auto") == torch.device("cuda", 1)
    assert pick_device("cuda") == torch.device("cuda", 1)


def test_the_backend_follows_the_experiments_device(one_gpu):
    assert distributed_backend("cpu") == "gloo"  # a CPU job on a GPU box: NCCL would fail
    assert distributed_backend("auto") == "nccl" and distributed_backend("cuda") == "nccl"
    one_gpu.setattr(torch.cuda, "is_available", lambda: False)
    assert distributed_backend("auto") == "gloo"
