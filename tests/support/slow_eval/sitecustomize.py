"""A deliberately slow evaluation in every process started with this folder first on ``PYTHONPATH``.

Python imports ``sitecustomize`` at start-up, so a torchrun job's ranks get it too. With
``LMC_SLOW_EVAL_EPOCH`` set, rank 0's evaluation after that epoch first creates the file
``LMC_SLOW_EVAL_MARK`` (the test's cue to send its signal) and then sleeps ``LMC_SLOW_EVAL_S``
seconds: longer than the launcher's shutdown timeout the test sets, shorter than ours.
"""

import os

if os.environ.get("LMC_SLOW_EVAL_EPOCH"):
    import time
    from pathlib import Path

    import engine.train.loop as _loop

    _real_evaluate = _loop.evaluate

    def _slow_evaluate(lp, epoch, train_loss):
        if epoch == int(os.environ["LMC_SLOW_EVAL_EPOCH"]) and lp.dist.main:
            Path(os.environ["LMC_SLOW_EVAL_MARK"]).touch()
            time.sleep(float(os.environ.get("LMC_SLOW_EVAL_S", "8")))
        return _real_evaluate(lp, epoch, train_loss)

    _loop.evaluate = _slow_evaluate
