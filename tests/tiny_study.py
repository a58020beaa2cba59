"""The demo study's five experiments on the tiniest settings that exercise every task.

Same names, tasks and dependencies as ``experiments.toml``'s demo-* experiments
(inspect, pretrain, classify, qa, inspect of the fine-tuned models), with bert-micro, a few
dozen rows and one epoch each: the whole study runs in well under a minute on 2 cores.
"""

TINY_STUDY = """
[settings]
runs_dir = "{runs}"

[[experiment]]
name = "demo-params"
task = "inspect"
model = "bert-micro"
heads = ["base", "pretraining", "classification", "qa"]

[[experiment]]
name = "demo-pretrain"
task = "pretrain"
model = "bert-micro"
tokenizer = "train"
vocab_size = 2000
dataset = "embedded:wikitext"
dataset_config = "wikitext-2-raw-v1"
eval_split = "test"
epochs = 1
batch_size = 16
max_seq_length = 64
max_train_samples = 64
max_eval_samples = 16
logging_steps = 2

[[experiment]]
name = "demo-sst2"
task = "classify"
model = "run:demo-pretrain"
dataset = "embedded:sst2"
dataset_config = "sst2"
text_column = "sentence"
eval_split = "test"
epochs = 1
batch_size = 16
max_seq_length = 32
max_train_samples = 96
max_eval_samples = 40
logging_steps = 2

[[experiment]]
name = "demo-squad"
task = "qa"
model = "run:demo-pretrain"
dataset = "embedded:squad_v2"
dataset_config = "squad_v2"
epochs = 1
batch_size = 16
max_seq_length = 96
doc_stride = 32
max_train_samples = 64
max_eval_samples = 24
logging_steps = 2

[[experiment]]
name = "demo-params-finetuned"
task = "inspect"
model = "run:demo-sst2"
heads = ["base", "classification", "qa"]
depends_on = ["demo-squad"]
"""

STUDY_ORDER = ("demo-params", "demo-pretrain", "demo-sst2", "demo-squad", "demo-params-finetuned")


def run_tiny_study(folder):
    """Write the manifest under ``folder`` and run the whole study; returns (manifest, runs by name)."""
    from pathlib import Path

    from engine.jobs import run_experiment
    from engine.manifest import load

    folder = Path(folder)
    path = folder / "experiments.toml"
    path.write_text(TINY_STUDY.format(runs=folder / "runs"))
    manifest = load(path)
    runs = {name: run_experiment(manifest, name) for name in STUDY_ORDER}
    for name, run in runs.items():
        assert run.status()["status"] == "finished", (name, run.status())
    return manifest, runs
