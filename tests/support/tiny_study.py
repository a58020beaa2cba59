"""The demo study's five experiments on the tiniest settings that exercise every task.

Same names, tasks and dependencies as ``experiments.toml``'s demo-* experiments
(inspect, pretrain, classify, qa, inspect of the fine-tuned models), with bert-micro, a few
dozen rows and one epoch each: the whole study runs in well under a minute on 2 cores.
"""

from support.manifests import CLASSIFY, PRETRAIN, QA, experiment, manifest_text, write_manifest

STUDY = (
    experiment(
        name="demo-params", task="inspect", model="bert-micro", heads=["base", "pretraining", "classification", "qa"]
    ),
    experiment(PRETRAIN, name="demo-pretrain"),
    experiment(CLASSIFY, name="demo-sst2", model="run:demo-pretrain"),
    experiment(QA, name="demo-squad", model="run:demo-pretrain"),
    experiment(
        name="demo-params-finetuned",
        task="inspect",
        model="run:demo-sst2",
        heads=["base", "classification", "qa"],
        depends_on=["demo-squad"],
    ),
)

STUDY_ORDER = ("demo-params", "demo-pretrain", "demo-sst2", "demo-squad", "demo-params-finetuned")


def run_tiny_study(folder):
    """Write the manifest under ``folder`` and run the whole study; returns (manifest, runs by name)."""
    from pathlib import Path

    from engine.job.runner import run_experiment
    from engine.manifest import load

    folder = Path(folder)
    manifest = load(write_manifest(folder, manifest_text(folder / "runs", *STUDY)))
    runs = {name: run_experiment(manifest, name) for name in STUDY_ORDER}
    for name, run in runs.items():
        assert run.status()["status"] == "finished", (name, run.status())
    return manifest, runs
