import pytest

from defuse_widgets.cli import build_parser, main


def test_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--quick", "--dataset", "--Q", "--a", "--b", "--K", "--eps", "--tau", "--lams",
                 "--epochs", "--device", "--seed", "--out", "SIMULATED"):
        assert flag in out, flag


def test_flags_reach_the_config():
    args = build_parser().parse_args(["run", "--quick", "-Q", "7", "--lams", "0.1,1,10",
                                      "--literal", "--K", "12"])
    assert args.Q == 7 and args.lams == (0.1, 1.0, 10.0) and args.centered is False
    assert args.n_components == 12


def test_noise_is_centred_by_default_and_literal_is_one_flag_away():
    from defuse_widgets.workflow import DefuseConfig

    assert build_parser().parse_args(["run"]).centered is None   # the config's default applies
    assert DefuseConfig().centered is True and DefuseConfig.quick().centered is True
    assert build_parser().parse_args(["run", "--literal"]).centered is False


@pytest.mark.parametrize("argv, message", [
    (["run", "--lams", "1,-2"], "--lams must be non-negative"),
    (["run", "--lams", "a,b"], "--lams must be comma-separated numbers"),
    (["run", "--dataset", "cifar"], "invalid choice"),
])
def test_bad_flags_exit_with_a_message(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["run", "--tau", "0"], "tau must be > 0"),
    (["run", "-Q", "0"], "Q must be >= 1"),
])
def test_bad_values_are_reported_before_any_work(tmp_path, capsys, argv, message):
    code = main(argv + ["--out", str(tmp_path / "s"), "--no-progress"])
    assert code == 2
    assert message in capsys.readouterr().err


def test_every_stage_has_a_subcommand_on_a_session_folder(capsys):
    for name in ("identify", "distill", "label", "correct", "report", "status"):
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        assert "--session" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["label", "--session", "x"])   # --simulated is required headless
    assert "--simulated" in capsys.readouterr().err


def test_status_of_a_new_folder_and_errors_name_the_file(tmp_path, capsys):
    assert main(["status", "--session", str(tmp_path / "s")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()   # status creates nothing
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "manifest.json").write_text("{broken")
    assert main(["status", "--session", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "manifest.json" in err and "Traceback" not in err
