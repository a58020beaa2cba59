"""Per-evaluation predictions on disk: one file per evaluation, fractional epochs (eval_steps) included."""

from __future__ import annotations

import argparse

import pytest

from engine.cli.main import _epoch_number
from engine.store.predictions import epoch_path, read_epoch, save_epoch, saved_epochs


def test_an_evaluation_inside_an_epoch_keeps_its_own_file(tmp_path):
    """With eval_steps an evaluation at epoch 1.5 is saved beside (not over) the one after epoch 1."""
    for epoch in (0, 1, 1.5, 2, 2 / 3 + 2):
        save_epoch(tmp_path, epoch, [{"epoch": epoch}])
    assert saved_epochs(tmp_path) == [0, 1, 1.5, 2, pytest.approx(2.66667)]
    assert epoch_path(tmp_path, 1.5).name == "epoch-1.5.jsonl" and epoch_path(tmp_path, 2.0).name == "epoch-2.jsonl"
    for epoch in saved_epochs(tmp_path):  # each listed epoch reads back its own rows
        assert read_epoch(tmp_path, epoch)[0]["epoch"] == pytest.approx(epoch, abs=1e-5)


def test_cli_epoch_takes_whole_and_fractional_epochs():
    assert _epoch_number("2") == 2 and isinstance(_epoch_number("2"), int)
    assert _epoch_number("1.5") == 1.5
    for bad in ("x", "-1", "nan", "inf"):
        with pytest.raises(argparse.ArgumentTypeError):
            _epoch_number(bad)
