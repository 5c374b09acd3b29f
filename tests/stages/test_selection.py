import numpy as np
import pytest

from defuse_widgets.stages.correction.lambda_rule import paired_change, rank, verdict


def test_paired_change_counts_and_interval():
    before = np.array([1] * 90 + [0] * 10, bool)
    after = before.copy()
    after[:6] = False          # 6 lost
    after[90:92] = True        # 2 gained
    ch = paired_change(before, after, 0.95)
    assert (ch["n"], ch["lost"], ch["gained"]) == (100, 6, 2)
    assert ch["change"] == pytest.approx(-0.04)
    half = 1.959964 * np.sqrt(8 - 16 / 100) / 100
    assert (ch["low"], ch["high"]) == pytest.approx((-0.04 - half, -0.04 + half), abs=1e-6)
    assert ch["high"] > 0      # 4 net images of 100 is not a significant loss
    assert paired_change(before, before)["high"] == 0.0   # no discordant image, no change


def test_paired_change_is_significant_for_a_consistent_loss():
    before = np.ones(500, bool)
    after = before.copy()
    after[:15] = False
    assert paired_change(before, after)["high"] < 0   # 15 lost, none gained


def _rec(lam, val, reg, val_high, reg_low):
    return dict(lam=lam, validation=val, region_validation=reg, validation_change=0.0,
                validation_change_low=-1.0, validation_change_high=val_high,
                region_validation_change=0.5, region_validation_change_low=reg_low,
                region_validation_change_high=1.0)


def test_rank_prefers_insignificant_loss_then_region_accuracy():
    a = _rec(0.01, 0.97, 0.2, 0.01, -0.1)
    b = _rec(0.1, 0.96, 0.95, 0.002, 0.6)
    c = _rec(1.0, 0.90, 1.0, -0.02, 0.7)     # significant validation loss
    best = max([a, b, c], key=lambda r: rank("interval", r, {}, 0.0))
    assert best is b
    assert verdict(b, 0.95)["corrected"] is True
    assert verdict(a, 0.95)["corrected"] is False
    assert "validation loss is significant" in verdict(c, 0.95)["message"]
    assert verdict({"lam": 1.0, "validation": 0.9}, 0.95)["corrected"] is None
    only_region = {k: v for k, v in b.items() if not k.startswith("validation")}
    assert verdict(only_region, 0.95)["corrected"] is None   # no validation set given
