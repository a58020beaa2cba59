"""No leaks across epochs: nothing per step or per epoch stays alive (logits, batches, events).

At each evaluation (after ``gc.collect()``) the number of live torch tensors and of
GC-tracked Python objects must not grow from the first epoch on. RSS itself is not
asserted: glibc keeps freed activations of varying shapes (see BENCHMARKS.md, "Memory").
"""

import gc

import pytest

from engine.events import CallbackSink
from engine.job.runner import run_experiment
from engine.manifest import parse_text

TASKS = {
    "pretrain": """
task = "pretrain"
dataset = "embedded:wikitext"
dataset_config = "wikitext-2-raw-v1"
eval_split = "test"
max_seq_length = 64
""",
    "classify": """
task = "classify"
dataset = "embedded:sst2"
dataset_config = "sst2"
text_column = "sentence"
eval_split = "validation"
max_seq_length = 32
""",
}


@pytest.mark.filterwarnings("ignore::FutureWarning")  # gc.get_objects() meets deprecated torch objects
@pytest.mark.parametrize("task", sorted(TASKS))
def test_live_objects_do_not_grow_across_epochs(tmp_path, task):
    import torch

    text = f'''
[settings]
runs_dir = "{tmp_path / "runs"}"

[[experiment]]
name = "leak"
model = "bert-micro"
tokenizer = "train"
vocab_size = 2000
epochs = 4
batch_size = 4
max_train_samples = 48
max_eval_samples = 16
logging_steps = 2
{TASKS[task]}'''
    counts = []

    def on_event(ev):
        if type(ev).__name__ == "EvalFinished" and ev.epoch >= 1:
            gc.collect()
            objs = gc.get_objects()
            counts.append((sum(1 for o in objs if torch.is_tensor(o)), len(objs)))

    run = run_experiment(parse_text(text, tmp_path / "m.toml"), "leak", sinks=[CallbackSink(on_event)])
    assert run.status()["status"] == "finished"
    assert len(counts) == 4, counts
    tensors = [t for t, _ in counts]
    objects = [o for _, o in counts]
    assert max(tensors[1:]) <= tensors[0], tensors  # epoch 1 holds everything (optimizer state included)
    # epoch 2 builds a few hundred objects lazily (caches), then the count stands still:
    # 12 steps per epoch, so leaking even one object per step shows
    assert max(objects[1:]) - objects[0] < 500, objects
    assert objects[-1] - objects[1] <= 10, objects
