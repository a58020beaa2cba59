"""bert-micro manifests small enough for a test: one pretraining, and the pipeline around it."""

from __future__ import annotations

from support.manifests import CLASSIFY, PRETRAIN, experiment, manifest_text


def micro_text(runs, epochs=2, n_train=160, **keys):
    """bert-micro pretraining on ``n_train`` pairs; ``keys`` change or add keys."""
    pre = experiment(
        PRETRAIN,
        epochs=epochs,
        learning_rate=1e-3,
        warmup=0.1,
        max_train_samples=n_train,
        max_eval_samples=48,
        seed=7,
        **keys,
    )
    return manifest_text(runs, pre)


def micro_text_pipeline(runs, extra=""):
    """The micro manifest with ``extra`` lines overriding keys of the "pre" experiment."""
    pre = experiment(
        PRETRAIN,
        extra,
        epochs=3,
        learning_rate=1e-3,
        logging_steps=1,
        max_train_samples=128,
        max_eval_samples=32,
        seed=11,
    )
    return manifest_text(
        runs,
        pre,
        experiment(name="params", task="inspect", model="bert-micro", heads=["base", "qa"]),
        experiment(CLASSIFY, eval_split=None, logging_steps=None, max_train_samples=32, max_eval_samples=16),
        experiment(name="push-pre", task="push", model="run:pre", hub_model_id="alice/pre"),
    )
