"""The shipped weights of the embedded default, and the command that reproduces them."""
import pytest

from defuse_widgets.data import load_mnist5k
from defuse_widgets.models.inference import accuracy
from defuse_widgets.models.pretrained import DEFAULT_SETTINGS, load_pretrained, load_report
from defuse_widgets.models.training import reconstruction_fidelity


@pytest.fixture(scope="module")
def shipped():
    return load_mnist5k(), load_pretrained()


def test_shipped_vae_is_faithful_on_held_out_images(shipped):
    data, (classifier, vae, _) = shipped
    fid = reconstruction_fidelity(classifier, vae, data.X_test, data.y_test)
    assert fid["accuracy_reconstructions"] >= 0.93
    assert fid["accuracy_images"] >= 0.95
    assert fid["active_dims"] >= 8  # no posterior collapse


def test_report_matches_the_weights(shipped):
    data, (classifier, vae, oracle) = shipped
    report = load_report()
    fid = reconstruction_fidelity(classifier, vae, data.X_val, data.y_val)
    assert report["fidelity"]["validation"]["accuracy_reconstructions"] == pytest.approx(
        fid["accuracy_reconstructions"], abs=1e-6)
    assert report["settings"] == DEFAULT_SETTINGS
    assert accuracy(oracle, data.X_test, data.y_test) == pytest.approx(
        report["oracle_accuracy"]["test"], abs=1e-6)


def test_missing_weights_and_unknown_dataset(tmp_path):
    with pytest.raises(ValueError, match="weights file must exist"):
        load_pretrained(weights_dir=tmp_path)
    with pytest.raises(ValueError, match="dataset must be 'mnist5k'"):
        load_pretrained("svhn")


def test_training_command_writes_loadable_weights(tmp_path):
    from defuse_widgets.models.pretrained import train_default_models

    tiny = {"classifier": {"epochs": 1}, "oracle": {"epochs": 1}, "vae": {"epochs": 1}}
    report = train_default_models(tmp_path, settings=tiny, progress=False, log=lambda *a: None)
    assert report["settings"]["vae"]["epochs"] == 1
    assert report["settings"]["vae"]["beta"] == DEFAULT_SETTINGS["vae"]["beta"]
    classifier, vae, oracle = load_pretrained(weights_dir=tmp_path)
    assert load_report(weights_dir=tmp_path)["fidelity"]["test"]["accuracy_images"] > 0.5
