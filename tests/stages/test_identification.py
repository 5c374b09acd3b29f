import numpy as np
import pytest
import torch
from torch import nn

from defuse_widgets.stages.identification import AdversarialExamples, identify


def _args(digits, tiny_models, n=200):
    clf, vae = tiny_models
    return clf, vae, digits.X_train[:n], digits.y_train[:n]


def test_kept_decodes_are_misclassified(digits, tiny_models, tiny_adversarial):
    clf, vae = tiny_models
    adv = tiny_adversarial
    assert len(adv) > 0
    decoded = vae.decode(torch.from_numpy(adv.codes))
    with torch.inference_mode():
        preds = clf(decoded).argmax(1).numpy()
    np.testing.assert_array_equal(preds, adv.predicted_label)
    assert (adv.predicted_label != adv.true_label).all()
    np.testing.assert_array_equal(adv.true_label, digits.y_train[:400].numpy()[adv.source_index])


def test_cap_keeps_smallest_noise(digits, tiny_models):
    clf, vae, X, y = _args(digits, tiny_models)
    full = identify(clf, vae, X, y, Q=16, a=2, b=2, centered=True, max_per_instance=None,
                    progress=False)
    capped = identify(clf, vae, X, y, Q=16, a=2, b=2, centered=True, max_per_instance=2,
                      progress=False)
    counts = np.bincount(capped.source_index, minlength=len(X))
    assert counts.max() <= 2
    for i in np.unique(full.source_index):
        norms = np.sort(full.noise_norm[full.source_index == i])[:2]
        np.testing.assert_allclose(np.sort(capped.noise_norm[capped.source_index == i]), norms,
                                   rtol=1e-6)


def test_reproducible_and_independent_of_chunking(digits, tiny_models):
    clf, vae, X, y = _args(digits, tiny_models, 100)
    a = identify(clf, vae, X, y, Q=8, a=3, b=3, centered=True, seed=3, chunk_size=7, progress=False)
    b = identify(clf, vae, X, y, Q=8, a=3, b=3, centered=True, seed=3, chunk_size=50,
                 progress=False)
    c = identify(clf, vae, X, y, Q=8, a=3, b=3, centered=True, seed=4, progress=False)
    np.testing.assert_allclose(a.codes, b.codes, atol=1e-6)
    assert a.n_decoded == 800
    assert len(c) != len(a) or not np.allclose(c.codes, a.codes)


def test_literal_noise_shifts_codes_by_beta_mean(digits, tiny_models):
    clf, vae, X, y = _args(digits, tiny_models, 100)
    mu = vae.encode(X)[0].detach().numpy()
    lit = identify(clf, vae, X, y, Q=8, a=50, b=50, centered=False, max_per_instance=None,
                   progress=False)
    cen = identify(clf, vae, X, y, Q=8, a=50, b=50, centered=True, max_per_instance=None,
                   progress=False)
    shift_lit = (lit.codes - mu[lit.source_index]).mean()
    assert abs(shift_lit - 0.5) < 0.02
    if len(cen):
        assert abs((cen.codes - mu[cen.source_index]).mean()) < 0.05


def test_npz_round_trip(tmp_path, tiny_adversarial):
    np.savez(tmp_path / "a.npz", **tiny_adversarial.to_npz())
    back = AdversarialExamples.from_npz(np.load(tmp_path / "a.npz"))
    np.testing.assert_array_equal(back.codes, tiny_adversarial.codes)
    assert back.params == tiny_adversarial.params


@pytest.mark.parametrize("kw, match", [({"Q": 0}, "Q must be >= 1"), ({"a": -1}, "a must be > 0"),
                                       ({"b": 0}, "b must be > 0"),
                                       ({"max_per_instance": 0}, "max_per_instance")])
def test_bad_parameters(digits, tiny_models, kw, match):
    clf, vae, X, y = _args(digits, tiny_models, 10)
    with pytest.raises(ValueError, match=match):
        identify(clf, vae, X, y, progress=False, **kw)


def test_wrong_image_shape(digits, tiny_models):
    clf, vae, X, y = _args(digits, tiny_models, 10)
    with pytest.raises(ValueError, match=r"X must have shape \(n, C, H, W\)"):
        identify(clf, vae, X[:, 0], y, Q=2, progress=False)
    with pytest.raises(ValueError, match="y must have length 10"):
        identify(clf, vae, X, y[:5], Q=2, progress=False)


def test_decoder_that_does_not_fit_classifier(digits, tiny_models):
    clf, vae, X, y = _args(digits, tiny_models, 10)
    from defuse_widgets.models import BetaVAE
    big = BetaVAE.from_family("mnist", image_size=16, n_latent=4, width=8)
    big.encoder = vae.encoder  # encodes 8x8 images, decodes 16x16 ones
    with pytest.raises(ValueError, match="decoder must output images shaped like X"):
        identify(clf, big, X, y, Q=2, progress=False)


def test_classifier_that_rejects_decodes(digits, tiny_models):
    _, vae, X, y = _args(digits, tiny_models, 10)
    clf = nn.Sequential(nn.Flatten(), nn.Linear(100, 10))  # expects 10x10 images
    with pytest.raises(ValueError, match="classifier must accept the decoder's output"):
        identify(clf, vae, X, y, Q=2, progress=False)


def test_non_mnist_shapes_and_class_count():
    """3-channel 16x16 images with 3 classes: nothing assumes MNIST."""
    from defuse_widgets.models import BetaVAE
    clf = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 3))
    vae = BetaVAE.from_family("svhn", image_size=16, n_latent=5, width=8)
    X = torch.rand(12, 3, 16, 16)
    y = torch.arange(12) % 3
    adv = identify(clf, vae, X, y, Q=4, a=2, b=2, progress=False)
    assert adv.codes.shape[1] == 5
    assert adv.predicted_label.max(initial=0) < 3


def test_identify_in_steps_equals_identify(digits, tiny_models):
    from defuse_widgets.stages.identification import identify_in_steps

    clf, vae = tiny_models
    X, y = digits.X_train[:400], digits.y_train[:400]
    seen = []
    adv = identify_in_steps(clf, vae, X, y, Q=64, a=5, b=5, max_per_instance=5, n_steps=3,
                            callback=lambda stage, done, total: seen.append((stage, done, total)))
    # whole chunks of 4096 // Q = 64 images, three reports, one protocol
    assert seen == [("identification", 0, 400),   # a sign of life before the first slice
                    ("identification", 192, 400), ("identification", 384, 400),
                    ("identification", 400, 400)]
    ref = identify(clf, vae, X, y, Q=64, a=5, b=5, max_per_instance=5, progress=False)
    for field in ("codes", "source_index", "true_label", "predicted_label", "noise_norm"):
        np.testing.assert_array_equal(getattr(adv, field), getattr(ref, field))
    assert adv.n_decoded == ref.n_decoded
    assert identify_in_steps(clf, vae, X, y, Q=8, a=5, b=5, n_steps=3,
                             callback=lambda *a: True) is None


def test_bf16_identification_decides_like_fp32(digits, tiny_models):
    """bf16 autocast with the fp32 re-check of close calls keeps fp32's decisions and codes;
    without the re-check (guard 0) some decisions differ.
    """
    import defuse_widgets.stages.identification as ident

    clf, vae = tiny_models
    X, y = digits.X_train[:200], digits.y_train[:200]
    kw = dict(Q=32, a=5, b=5, max_per_instance=None, seed=1, progress=False)
    fp32 = identify(clf, vae, X, y, **kw)
    bf16 = identify(clf, vae, X, y, precision="bf16", **kw)
    assert fp32.params["precision"] == "fp32" and bf16.params["precision"] == "bf16"
    assert fp32.params["n_rechecked"] == 0 < bf16.params["n_rechecked"] < bf16.n_decoded
    np.testing.assert_array_equal(bf16.codes, fp32.codes)
    np.testing.assert_array_equal(bf16.predicted_label, fp32.predicted_label)
    assert bf16.params["n_misclassified"] == fp32.params["n_misclassified"]
    guard, ident.GUARD = ident.GUARD, 0.0
    try:
        raw = identify(clf, vae, X, y, precision="bf16", **kw)
    finally:
        ident.GUARD = guard
    assert raw.params["n_rechecked"] == 0
    assert raw.params["n_misclassified"] != fp32.params["n_misclassified"]
    with pytest.raises(ValueError, match="precision"):
        identify(clf, vae, X, y, precision="half", **kw)


def test_classifier_returning_logits_and_features_is_refused_with_the_remedy(digits,
                                                                             tiny_models):
    clf, vae, X, y = _args(digits, tiny_models, 10)

    class WithFeatures(nn.Module):
        def forward(self, x):
            return clf(x), x.flatten(1)
    with pytest.raises(TypeError, match=r"classifier must return a tensor of logits of shape "
                                        r"\(n, n_classes\); got a tuple of 2 .*Wrap it in a "
                                        r"module whose forward returns the logits alone"):
        identify(WithFeatures(), vae, X, y, Q=2, progress=False)
