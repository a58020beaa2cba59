"""Length-bucketed batches: the ranks of one DDP step draw batches of one length bucket."""

import random

from engine.tasks.common import EpochBatches, length_batches


def _lengths(n=2000, seed=0):
    rng = random.Random(seed)
    return [rng.randint(8, 512) for _ in range(n)]


def test_one_process_keeps_the_order_it_had():
    lengths = _lengths()
    assert length_batches(lengths, 16, 7, ranks=1) == length_batches(lengths, 16, 7)
    assert EpochBatches(lengths, 16, 7, ranks=1).of(3) == length_batches(lengths, 16, 7 * 1000 + 3)


def test_the_ranks_of_one_step_get_batches_of_similar_length():
    """Rank r takes batch step * ranks + r: those batches are neighbours in one sorted mega-batch, so their
    longest sequences differ far less than two random batches' do (each all-reduce waits for the longest)."""
    lengths, ranks = _lengths(), 4
    batches = length_batches(lengths, 16, 7, ranks=ranks)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))  # every row once

    def spread(group):
        longest = [max(lengths[i] for i in b) for b in group]
        return max(longest) - min(longest)

    steps = [batches[s : s + ranks] for s in range(0, len(batches) - ranks + 1, ranks)]
    aligned = sum(spread(g) for g in steps) / len(steps)
    unaligned = length_batches(lengths, 16, 7)
    random_steps = [unaligned[s : s + ranks] for s in range(0, len(unaligned) - ranks + 1, ranks)]
    assert aligned < 0.2 * sum(spread(g) for g in random_steps) / len(random_steps), aligned


def test_the_job_size_comes_from_torchrun(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert EpochBatches(_lengths(), 16, 7).ranks == 2
    monkeypatch.delenv("WORLD_SIZE")
    assert EpochBatches(_lengths(), 16, 7).ranks == 1
