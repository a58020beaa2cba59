"""One optimizer step must not take more than an epoch: a batch larger than the training set, or more
accumulated batches than an epoch has, stops the job with the key and the largest value that fits
(it used to become one silent step per epoch over the whole set)."""

from __future__ import annotations

import pytest
from engine.errors import JobError
from engine.tasks.common import check_epoch_fits


@pytest.mark.parametrize(
    "n, batch, accumulation, ranks, words",
    [
        (100, 101, 1, 1, "batch_size = 101 is larger than the training set (100 examples); use batch_size <= 100"),
        (100, 60, 1, 2, "batch_size = 60 across 2 processes is larger than the training set"),
        (100, 10, 11, 1, "gradient_accumulation_steps = 11 is more than the 10 batches of an epoch"),
        (100, 10, 6, 2, "gradient_accumulation_steps = 6 is more than the 5 batches"),
    ],
)
def test_a_step_longer_than_an_epoch_is_refused(n, batch, accumulation, ranks, words):
    with pytest.raises(JobError) as err:
        check_epoch_fits(n, batch, accumulation, ranks)
    assert words in f"{err.value}; {err.value.hint}"


@pytest.mark.parametrize("n, batch, accumulation, ranks", [(100, 100, 1, 1), (100, 10, 10, 1), (100, 25, 2, 2)])
def test_a_step_within_an_epoch_passes(n, batch, accumulation, ranks):
    check_epoch_fits(n, batch, accumulation, ranks)

