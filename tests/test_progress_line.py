"""ProgressLine prints the first and last step of each run and throttles the rest."""
import io

from defuse_widgets.callbacks import ProgressLine


def test_prints_first_and_last_step_and_restarts_per_run():
    out = io.StringIO()
    line = ProgressLine(every_s=3600, file=out)
    for _run in range(2):
        for it in range(1, 6):
            assert line("level sets", it, 5) is None          # never asks to stop
    line("training", 1, 2)
    text = out.getvalue().splitlines()
    assert [t.split(" (")[0] for t in text] == ["level sets: 1/5", "level sets: 5/5",
                                                "level sets: 1/5", "level sets: 5/5",
                                                "training: 1/2"]


def test_prints_every_step_without_throttle():
    out = io.StringIO()
    line = ProgressLine(every_s=0, file=out)
    for it in range(1, 4):
        line("mcmc", it, 3)
    assert len(out.getvalue().splitlines()) == 3
