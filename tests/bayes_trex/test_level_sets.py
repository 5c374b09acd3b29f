"""Bayes-TrEx level sets on the shipped models: targets are reached; input is checked."""
import numpy as np
import pytest
import torch

from defuse_widgets.bayes_trex.evaluation import (
    all_pair_targets,
    ambiguity_counts,
    baseline_ambiguity,
    confident_failures,
    sampled_ambiguity,
)
from defuse_widgets.bayes_trex.level_sets import LevelSetSampler, Target, level_set_log_likelihood
from defuse_widgets.models.pretrained import load_pretrained
from defuse_widgets.stages.identification import AdversarialExamples


@pytest.fixture(scope="module")
def shipped():
    return load_pretrained()


@pytest.fixture(scope="module")
def fitted(shipped):
    clf, vae, _ = shipped
    targets = [Target.high_confidence(4), Target.ambiguous(1, 7), Target.graded(8, 0.3)]
    torch.manual_seed(0)
    return LevelSetSampler(targets=targets, n_chains=8, n_warmup=80, n_samples=30,
                           n_init=1024, device="cpu", seed=0).fit(clf, vae)


def test_targets_are_reached_on_average(fitted):
    rows = {r["target"]: r for r in fitted.confidence_table()}
    assert rows["P_4 = 1"]["mean"][0] > 0.9
    assert all(abs(m - 0.5) < 0.1 for m in rows["P_1 = P_7 = 0.5"]["mean"])
    assert abs(rows["P_8 = 0.3"]["mean"][0] - 0.3) < 0.1
    assert fitted.codes_.shape == (30, 24, 10) and fitted.probs_.shape == (30, 24, 10)
    assert 0.2 < fitted.accept_rate_ < 0.9


def test_probs_are_the_classifier_softmax_of_the_decodes(fitted, shipped):
    clf, vae, _ = shipped
    with torch.no_grad():
        p = torch.softmax(clf(vae.decode(torch.from_numpy(fitted.codes_[-1]))), 1).numpy()
    np.testing.assert_allclose(p, fitted.probs_[-1], atol=1e-4)


def test_likelihood_matches_the_papers_auxiliary_variables():
    p = torch.tensor([[0.45, 0.40, 0.15]])
    packed = lambda kind, i, j, c: (torch.tensor([kind]), torch.tensor([i]), torch.tensor([j]),  # noqa: E731
                                    torch.tensor([c]), torch.zeros(1, 3))
    amb = level_set_log_likelihood(p, packed(1, 0, 1, 0.0), 0.05)
    u1, u2 = 0.05, 0.40 - 0.15                       # eqs. 6-7, u* = (0, 0.5)
    assert amb.item() == pytest.approx(-0.5 * (u1 ** 2 + (u2 - 0.5) ** 2) / 0.05 ** 2, rel=1e-5)
    high = level_set_log_likelihood(p, packed(0, 0, 0, 1.0), 0.05)
    assert high.item() == pytest.approx(-0.5 * 0.55 ** 2 / 0.05 ** 2, rel=1e-5)


def test_samples_feed_distillation_as_adversarial_examples(fitted):
    adv = fitted.to_adversarial_examples(targets=[0], min_confidence=0.5)
    assert isinstance(adv, AdversarialExamples) and len(adv) > 0
    assert (adv.predicted_label == 4).mean() > 0.9 and (adv.source_index == -1).all()
    from defuse_widgets.stages.distillation import Distiller
    Distiller(n_components=3, seed=0).fit(adv, n_classes=10)


def test_ambiguity_matrix_and_confident_failures(fitted, shipped):
    counts = sampled_ambiguity(fitted)
    assert counts[1, 7] == counts[7, 1] > 0 and counts.sum() == 2 * counts[1, 7]
    assert len(all_pair_targets(10)) == 45
    assert ambiguity_counts(np.array([[0.5, 0.5, 0.0], [0.9, 0.05, 0.05]]))[0, 1] == 1
    assert baseline_ambiguity(shipped[0], torch.rand(4, 1, 32, 32)).shape == (10, 10)

    class SaysSeven:
        def label(self, images):
            return np.full(len(images), 7)
    r = confident_failures(fitted, SaysSeven(), target_class=4)
    assert r["n_confident"] > 0 and r["n_confirmed"] == r["n_annotated"]


def test_bad_input_names_the_parameter(shipped):
    clf, vae, _ = shipped
    with pytest.raises(TypeError, match="targets"):
        LevelSetSampler(targets=[4]).fit(clf, vae)
    with pytest.raises(ValueError, match="sigma"):
        LevelSetSampler(targets=[Target.high_confidence(1)], sigma=0, device="cpu").fit(clf, vae)
    with pytest.raises(ValueError, match="method"):
        LevelSetSampler(targets=[Target.high_confidence(1)], method="nuts",
                        device="cpu").fit(clf, vae)
    with pytest.raises(ValueError, match="targets"):
        LevelSetSampler(targets=[Target.high_confidence(12)], device="cpu").fit(clf, vae)
    with pytest.raises(TypeError, match="classifier"):
        LevelSetSampler(targets=[Target.high_confidence(1)]).fit("clf", vae)
    with pytest.raises(ValueError, match="j must differ"):
        Target.ambiguous(3, 3)
    with pytest.raises(ValueError, match="c must be"):
        Target.graded(1, 1.5)
    with pytest.raises(ValueError, match="sum to 1"):
        Target.vector([0.5, 0.6])


def test_generator_and_subset_classifier_helpers_check_their_input(shipped):
    from defuse_widgets.bayes_trex.evaluation import (
        train_class_excluded_vae,
        train_subset_classifier,
    )
    X, y = torch.rand(6, 1, 32, 32), torch.tensor([0, 0, 1, 1, 2, 2])
    with pytest.raises(ValueError, match="exclude"):
        train_class_excluded_vae(X, y, 5)
    with pytest.raises(ValueError, match="exclude"):
        train_class_excluded_vae(X, y, [0, 1, 2])
    with pytest.raises(ValueError, match="classes"):
        train_subset_classifier(X, y, [0, 0])
    with pytest.raises(ValueError, match="X"):
        train_subset_classifier(torch.rand(6, 1, 8, 8), y, [0, 1])
    clf = train_subset_classifier(X, y, [0, 2], epochs=1)
    assert clf(X).shape == (6, 2)
    with pytest.raises(TypeError, match="annotator"):
        confident_failures(None, object(), target_class=1)


def test_annealed_sigma_ends_at_sigma_and_keeps_draws_of_the_final_target(shipped):
    from defuse_widgets.bayes_trex.targets import pack_targets
    clf, vae, _ = shipped
    t = Target.ambiguous(1, 7)
    ls = LevelSetSampler(targets=[t], n_chains=4, n_warmup=20, n_samples=5, n_init=256,
                         sigma=0.05, sigma_start=0.5, device="cpu", seed=0).fit(clf, vae)
    assert ls.sampler_.n_evaluations_ == 1 + 25 + 10     # re-evaluated at each of 10 σ steps
    z = torch.from_numpy(ls.codes_[-1])
    with torch.no_grad():
        probs = torch.softmax(clf(vae.decode(z)), 1)
    packed = pack_targets([t], np.zeros(4, np.int64), 10, "cpu")
    expected = -0.5 * (z ** 2).sum(1) + level_set_log_likelihood(probs, packed, 0.05)
    np.testing.assert_allclose(ls.sampler_.log_prob_[-1].numpy(), expected.numpy(), rtol=1e-3,
                               atol=1e-2)
    with pytest.raises(ValueError, match="sigma_start must be >= 0.05"):
        LevelSetSampler(targets=[t], sigma_start=0.01, device="cpu").fit(clf, vae)


def test_fit_reports_progress_and_stops(shipped):
    from defuse_widgets.callbacks import Stopped
    clf, vae, _ = shipped
    seen = []
    LevelSetSampler(targets=[Target.high_confidence(3)], n_chains=2, n_warmup=3, n_samples=4,
                    n_init=64, device="cpu").fit(clf, vae, callback=lambda *a: seen.append(a))
    assert seen == [("level sets", k, 7) for k in range(1, 8)]
    with pytest.raises(Stopped):
        LevelSetSampler(targets=[Target.high_confidence(3)], n_chains=2, n_warmup=3,
                        n_samples=2, n_init=64, device="cpu").fit(clf, vae,
                                                                   callback=lambda *a: True)


def test_init_codes_are_where_chains_start(shipped):
    clf, vae, _ = shipped
    start = np.full((3, 10), 0.7, np.float32)
    ls = LevelSetSampler(targets=[Target.high_confidence(2)], n_chains=3, method="rwm",
                         step_size=1e-7, n_warmup=0, n_samples=4, n_init=0,
                         init_codes=start, device="cpu").fit(clf, vae)
    # n_init=0: the pool is init_codes alone, so every chain starts at (and, with a
    # vanishing step, stays at) one of them
    np.testing.assert_allclose(ls.codes_[0], start, atol=1e-5)
    with pytest.raises(ValueError, match="n_init plus the rows of init_codes"):
        LevelSetSampler(targets=[Target.high_confidence(2)], n_chains=4, n_init=0,
                        init_codes=start, device="cpu").fit(clf, vae)
    with pytest.raises(ValueError, match="init_codes must have 10 latent dimensions"):
        LevelSetSampler(targets=[Target.high_confidence(2)], init_codes=np.zeros((4, 3)),
                        device="cpu").fit(clf, vae)


def test_climbing_starts_chains_nearer_the_level_set(shipped):
    from defuse_widgets.bayes_trex.targets import pack_targets
    clf, vae, _ = shipped
    t = Target.ambiguous(3, 5)
    packed = pack_targets([t], np.zeros(6, np.int64), 10, "cpu")
    kw = dict(targets=[t], n_chains=6, method="rwm", step_size=1e-7, n_warmup=0, n_samples=4,
              n_init=256, device="cpu", seed=0)
    stages = []

    def loglik(ls):      # the chains barely move, so their draws are their starting points
        with torch.no_grad():
            probs = torch.softmax(clf(vae.decode(torch.from_numpy(ls.codes_[0]))), 1)
        return level_set_log_likelihood(probs, packed, 0.05).numpy()
    plain = loglik(LevelSetSampler(**kw).fit(clf, vae))
    climbed = LevelSetSampler(n_optimize=30, optimize_candidates=2, optimize_lr=0.05, **kw).fit(
        clf, vae, callback=lambda s, d, n: stages.append(s))
    assert climbed.codes_.shape == (4, 6, 10)
    assert np.median(loglik(climbed)) > np.median(plain) + 1.0
    assert stages.count("level sets: climb") == 30 and stages[-1] == "level sets"
    from defuse_widgets.callbacks import Stopped
    with pytest.raises(Stopped, match="climb"):
        LevelSetSampler(n_optimize=5, **kw).fit(clf, vae, callback=lambda s, d, n: True)
    with pytest.raises(ValueError, match="optimize_lr must be > 0"):
        LevelSetSampler(n_optimize=5, optimize_lr=0, **kw).fit(clf, vae)


def test_a_decoder_of_another_latent_size_is_refused_naming_both(bare_vae):
    from defuse_widgets.models import MnistCNN

    clf, decoder = MnistCNN(1, 8, 10), bare_vae(n_latent=4)
    sampler = LevelSetSampler(targets=[Target.high_confidence(1)], n_chains=2, n_warmup=2,
                              n_samples=4, n_init=0, n_latent=8, device="cpu")
    with pytest.raises(ValueError, match=r"decoder must decode codes of 8 latent dimensions "
                                         r"\(n_latent=8\); it takes codes of 4 latent "
                                         r"dimensions"):
        sampler.fit(clf, decoder)
    sampler.set_params(n_latent=None).fit(clf, decoder)   # read off the first layer
    assert sampler.codes_.shape == (4, 2, 4)
