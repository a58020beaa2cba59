"""The console's alerts: a toast for each job this console saw finish, fail (NaN) or stall, and the
terminal escapes of settings.console_alerts (bell, OSC 9, OSC 777; wrapped for tmux's passthrough)."""

from __future__ import annotations

import asyncio

from support.console import make_app, wait_for

from engine.queue.jobqueue import Job
from tui.alerts import Alert, JobAlerts, escapes


def test_only_changes_seen_by_this_console_are_told():
    alerts = JobAlerts()
    jobs = [Job("a", id=1, status="finished"), Job("b", id=2, status="running"), Job("c", id=3, status="running")]
    assert alerts.changes(jobs) == []  # what had ended before the console looked is no news
    jobs[1].status = "stalled"
    jobs[1].reason = "no step, evaluation or heartbeat for 20m00s"
    jobs[2].status, jobs[2].reason = "failed", "loss became NaN/inf by step 12"
    told = alerts.changes(jobs)
    assert [(a.kind, a.severity) for a in told] == [("stalled", "warning"), ("nan", "error")]
    assert told[0].text == "#2 b stalled: no step, evaluation or heartbeat for 20m00s"
    assert alerts.changes(jobs) == []  # told once
    jobs[1].status, jobs[1].reason = "finished", ""
    (done,) = alerts.changes(jobs)
    assert (done.kind, done.text, done.severity) == ("finished", "#2 b finished", "information")


def test_the_last_job_of_a_sweep_or_a_study_tells_its_end_once():
    """A sweep's end whatever its trials did (a pruned or failed trial is one of its ends), and of its trials
    only the failures; a study's end only when every one of its jobs finished."""

    def groups(job):
        return [("sweep", "sw")] if job.experiment == "sw" else [("study", "both")]

    alerts = JobAlerts(groups)
    trials = [Job("sw", id=i, status="running") for i in (1, 2, 3)]
    steps = [Job("params", id=4, status="running"), Job("baseline", id=5, status="queued")]
    jobs = trials + steps
    assert alerts.changes(jobs) == []
    trials[0].status, trials[1].status, trials[1].reason = "finished", "failed", "CUDA out of memory"
    # a trial that fails is told; one that finishes is not (a dozen toasts), and trial 3 still runs: no end yet
    assert [a.kind for a in alerts.changes(jobs)] == ["failed"]
    trials[2].status = "pruned"  # the last trial: pruned, no alert of its own, but the sweep has ended
    (told,) = alerts.changes(jobs)
    assert told.kind == "sweep_done" and told.severity == "information"
    assert told.text == "sw sweep done: 1 of 3 trials finished"
    assert alerts.changes(jobs) == []  # told once
    steps[0].status = "finished"
    assert [a.kind for a in alerts.changes(jobs)] == ["finished"]  # baseline is still to come
    steps[1].status = "finished"
    assert [a.text for a in alerts.changes(jobs)] == ["#5 baseline finished", "both study done: 2 jobs finished"]


def test_escapes_bell_osc9_osc777_and_tmux_passthrough():
    alert = Alert("failed", "x; y failed", "#1 x failed: \x1b]0;evil\x07 boom")
    assert escapes(["bell"], alert, in_tmux=True) == "\a"
    osc9 = escapes(["osc9"], alert, in_tmux=False)
    assert osc9 == "\x1b]9;#1 x failed:  ]0;evil  boom\x07"  # a control character never ends the escape early
    assert escapes(["osc777"], alert, in_tmux=False) == "\x1b]777;notify;x, y failed;#1 x failed:  ]0;evil  boom\x07"
    wrapped = escapes(["osc9"], alert, in_tmux=True)
    assert wrapped == "\x1bPtmux;" + osc9.replace("\x1b", "\x1b\x1b") + "\x1b\\"
    assert escapes([], alert) == ""


def test_the_console_toasts_a_job_that_finishes(tmp_path):
    async def go():
        app = make_app(tmp_path, history=False)
        async with app.run_test(size=(80, 24)) as pilot:
            assert await wait_for(pilot, lambda: app.queue is not None and hasattr(app, "_alerts"))
            app.queue.submit(["params"])
            assert await wait_for(pilot, lambda: any("#1 params finished" in n.message for n in app._notifications))

    asyncio.run(go())
