"""The `keras-damped` command: what it writes and what it refuses, before
any work, with a message naming the value and the valid choices."""

import dataclasses
import io
import json
import re

import pytest

from keras_damped.cli import DEPRECATED
from keras_damped.cli import REMOVED_IN
from keras_damped.cli import build_parser
from keras_damped.cli import main as cli_main
from keras_damped.cli import modernize


def run(argv):
    """The command's exit status (argparse's own refusals exit with 2)."""
    try:
        return cli_main(argv)
    except SystemExit as exit:
        return exit.code


EVALUATE_REFUSALS = [
    (["--eps", "-1"], r"eps must be radii in \(0, 255\].*eps=-1/255"),
    (["--eps", "0"], r"eps must be radii in \(0, 255\].*eps=0/255"),
    (["--eps", "300"], r"eps must be radii in \(0, 255\].*eps=300/255"),
    (["--attack-eps", "cw_l2=2"], r"attack_eps names attacks that do not run"),
    (["--attack-eps", "pgd:2"], r"--attack-eps is written name=v1,v2"),
    (["--eps", "two"], "comma-separated numbers"),
    (["--attacks", "deepfool"], "attack='deepfool'"),
    (["--attacks", "autoatack"], r"attack='autoatack'"),
    (["--noises", "fog"], "noise='fog'"),
    (["--severities", "0-3"], r"severity must be an integer in 1-5.*'0-3'"),
    (["--severities", "6"], r"severity must be an integer in 1-5.*'6'"),
    (["--severities", "5-1"], r"range goes from low to high \(1-5\).*'5-1'"),
    (["--severities", "1-3-5"], r"as a list or a range.*'1-3-5'"),
    (["--severities", "1,,2"], r"as a list or a range.*'1,,2'"),
    (["--dataset", "cifar10"], r"takes inputs \(None, 28, 28, 1\)"),
    (["--square-queries", "0"], r"--square-queries must be a positive integer"),
    (["--apgd-steps", "ten"], r"--apgd-steps must be a positive integer"),
    (["--target-classes", "-3"], r"--target-classes must be a positive integer"),
    (["--test-limit", "0"], r"--test-limit must be a positive integer"),
    (["--limit", "8"], r"--limit was renamed: use --test-limit"),
    (["--protocols", "pixel,authors-2021"], "protocol='authors-2021'"),
    (["--norm", "l1"], r"argument --norm: invalid choice: 'l1'"),
    (["--norm", "l2", "--attacks", "pgd,spsa"], r"\['spsa'\] cannot run in the l2"),
    (["--robustbench-json", "rb.json", "--attacks", "pgd"], "needs AutoAttack"),
    (
        [
            "--robustbench-json",
            "rb.json",
            "--attacks",
            "autoattack",
            "--apgd-steps",
            "9",
        ],
        r"standard version \(apgd_steps=100.*apgd_steps=9",
    ),
    (
        ["--robustbench-json", "rb.json", "--attacks", "autoattack", "--eps", "2,8"],
        r"one radius.*\['2', '8'\]",
    ),
]


@pytest.mark.parametrize("args,match", EVALUATE_REFUSALS)
def test_bad_evaluate_input_is_refused_before_any_work(
    args, match, tiny_model_path, tmp_path, capsys
):
    out = tmp_path / "eval"
    argv = ["evaluate", "--model", tiny_model_path, "--dataset", "fashion_mnist"]
    code = run([*argv, "--out", str(out), *args])
    assert code == 2
    assert re.search(match, capsys.readouterr().err)
    assert not out.exists() and not (tmp_path / "eval.partial").exists()
    assert not (tmp_path / "eval.batches").exists()


def test_evaluate_command_writes_the_run_folder_and_keeps_it(
    tiny_model_path, tmp_path, capsys
):
    """One evaluation through the command: the noise, FGSM at two radii,
    AutoAttack at one (--attack-eps) with a stated budget; the files; and a
    second run that refuses to replace them."""
    out = tmp_path / "eval"
    argv = ["evaluate", "--model", tiny_model_path, "--dataset", "fashion_mnist"]
    argv += ["--attacks", "fgsm,autoattack", "--eps", "1,2"]
    argv += ["--attack-eps", "autoattack=2", "--noises", "shot", "--severities", "1,5"]
    argv += ["--test-limit", "16", "--attack-limit", "8", "--apgd-steps", "3"]
    argv += ["--target-classes", "2", "--square-queries", "5", "--out", str(out)]
    assert run(argv) == 0
    printed = capsys.readouterr().out
    assert "| FGSM 1 | FGSM 2 | AUTOATTACK (reduced) 2 | WORST 1 | WORST 2 |" in printed
    assert (
        "Budgets: AUTOATTACK (reduced): APGD 3 iterations, 2 target classes, "
        "Square 5 queries." in printed
    )
    assert f"tensorboard --logdir {out}/tb" in printed
    assert not (tmp_path / "eval.batches").exists()  # kept until saved
    data = json.loads((out / "report.json").read_text())
    settings = data["settings"]
    assert settings["eps_255"] == ["1", "2"]
    assert settings["attack_eps_255"] == {"fgsm": ["1", "2"], "autoattack": ["2"]}
    assert settings["severities"] == [1, 5]
    assert (settings["examples"], settings["attack_examples"]) == (16, 8)
    assert settings["config"]["test_limit"] == 16
    before = (out / "report.json").read_bytes()
    assert run(argv) == 2  # refuses to replace results without --overwrite
    assert "already holds results" in capsys.readouterr().err
    assert (out / "report.json").read_bytes() == before


class StopEvaluationError(Exception):
    pass


def test_the_evaluate_command_resumes_from_its_kept_batches(
    tiny_model_path, tmp_path, capsys
):
    """An evaluation with the command's settings, stopped halfway with its
    finished attack batches in OUT.batches/ (where the command keeps them),
    then the command: it reuses them and removes the folder once the report
    is saved (that the resumed report is the straight one: test_partial.py)."""
    from keras_damped.cli import evaluate as command
    from keras_damped.robustness import evaluate

    argv = ["evaluate", "--model", tiny_model_path, "--dataset", "fashion_mnist"]
    argv += ["--attacks", "pgd", "--eps", "2,8", "--noises", "none", "--steps", "3"]
    argv += ["--test-limit", "32", "--eval-batch-size", "4"]
    argv += ["--out", str(tmp_path / "eval")]
    batches = tmp_path / "eval.batches"

    def stop_halfway(done, total):
        if done > total / 2:
            raise StopEvaluationError

    settings = command.config(build_parser().parse_args(argv))
    with pytest.raises(StopEvaluationError):
        evaluate([tiny_model_path], settings, progress=stop_halfway, partial=batches)
    kept = len([p for p in batches.iterdir() if p.suffix == ".npz"])
    # PGD at two radii and the large-radius check, 8 batches each.
    assert 1 <= kept < 24
    assert run(argv) == 0
    printed = capsys.readouterr().out
    assert f"Resumed: {kept} attack batches came from {batches} (1 earlier" in printed
    assert not batches.exists()
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["resumed"]["batches_reused"] == kept


@pytest.mark.parametrize(
    "norm,eps,shown", [("linf", "8", "8/255"), ("l2", "0.5", "0.5")]
)
def test_evaluate_writes_a_robustbench_entry_from_a_standard_run(
    norm, eps, shown, tiny_model_path, tmp_path, capsys
):
    out, entry_path = tmp_path / "eval", tmp_path / "entry" / "model.json"
    argv = ["evaluate", "--model", tiny_model_path, "--dataset", "fashion_mnist"]
    argv += ["--norm", norm, "--attacks", "autoattack", "--eps", eps, "--noises"]
    argv += ["none", "--test-limit", "6", "--out", str(out)]
    assert run([*argv, "--robustbench-json", str(entry_path)]) == 0
    assert f"Wrote the RobustBench entry {entry_path}" in capsys.readouterr().out
    entry = json.loads(entry_path.read_text())
    model = json.loads((out / "report.json").read_text())["models"]["in_resnet8"]
    key = next(iter(model["attacks"]["autoattack"]))
    assert entry["eps"] == shown
    assert entry["threat_model"] == {"linf": "Linf", "l2": "L2"}[norm]
    assert entry["clean_acc"] == f"{100 * model['attack_clean']:.2f}"
    assert entry["autoattack_acc"] == f"{100 * model['attacks']['autoattack'][key]:.2f}"
    # Counted: one per prediction, an integer as in RobustBench's entries.
    assert entry["number_forward_passes"] == 1
    assert isinstance(entry["number_forward_passes"], int)
    ours = entry["keras_damped"]
    assert ours["version"] == "standard" and ours["numbers"] == "reproduced"
    assert ours["stages"] == model["cost"]["autoattack"][key]["stages"]
    assert list(ours["stages"]) == ["apgd_ce", "apgd_t", "fab_t", "square"]
    for field in ("link", "name", "authors", "venue", "reported"):
        assert entry[field] is None  # the paper's details: the user's to fill
    # A second run keeps the entry unless told to replace it.
    before = entry_path.read_bytes()
    code = run([*argv, "--robustbench-json", str(entry_path), "--out", str(out) + "2"])
    assert code == 2 and "exists; pass --overwrite" in capsys.readouterr().err
    assert entry_path.read_bytes() == before


STUDY_REFUSALS = [
    (["--model", "resnet20,resnet21"], r"Unknown model\(s\) \['resnet21'\]"),
    (["--model", "resnet20", "--seeds", "0,x"], "--seeds must be comma-separated"),
    (["--model", "resnet20", "--seeds", "1,1"], "distinct integers"),
    (["--model", "resnet20", "--baseline", "in_resnet20"], "baseline must be one"),
    (["--model", "resnet20", "--noise-levels", "gaussian:0.3"], "name=v1,v2"),
    (["--model", "resnet20", "--noise-levels", "impulse=2"], "<= 1"),
    (["--model", "resnet20", "--limit", "5"], "--limit was renamed"),
    (["--model", "resnet20", "--eps", "256"], r"eps=256/255"),
    (["--model", "resnet20", "--attacks", "apgd"], "Unknown attack"),
    (["--model", "resnet20", "--epochs", "0"], "epochs must be a positive"),
    (["--model", "resnet20", "--protocols", "authors"], "protocol='authors'"),
    (
        ["--model", "resnet20", "--protocols", "pixel,authors-2020-06"]
        + ["--attacks", "pgd,apgd_ce"],
        "attack='apgd_ce' under",
    ),
    (["--model", "resnet20", "--import", "no_such_module"], "no_such_module"),
]


@pytest.mark.parametrize("args,message", STUDY_REFUSALS)
def test_bad_study_arguments_fail_before_any_work(args, message, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(["study", *args, "--out", str(out)]) == 2
    assert not out.exists()
    assert re.search(message, capsys.readouterr().err)


@pytest.mark.parametrize(
    "argv,match",
    [
        (["train", "--limit", "5"], "--limit was renamed: use --train-limit"),
        (["landscape", "--model", "m.keras", "--limit", "5"], "use --test-limit"),
        (["analyze", "--model", "m.keras", "--limit", "5"], "use --test-limit"),
    ],
)
def test_renamed_flags_name_their_successor(argv, match, tmp_path, capsys):
    out = tmp_path / "out"
    assert run([*argv, "--out", str(out)]) == 2
    assert match in capsys.readouterr().err
    assert not out.exists()


def test_models_lists_the_presets_and_refuses_an_unknown_pattern(capsys):
    assert run(["models", "--pattern", "in_resnet2*"]) == 0
    table = capsys.readouterr().out
    assert "| in_resnet20 " in table and "| 272,384 " in table
    # In-ResNet's k ~ U(0.75, 0.80) (the paper's code), so lambda = 1 - k:
    assert "| U(0.20, 0.25) " in table
    assert "resnet110" not in table
    assert run(["models", "--pattern", "vgg*"]) == 2
    assert "No model matches ['vgg*']" in capsys.readouterr().err


# --- one vocabulary: the renamed flags, the defaults from the configs ------

MINIMAL = {
    "train": ["train", "--out", "r"],
    "evaluate": ["evaluate", "--model", "m.keras", "--out", "o"],
    "study": ["study", "--model", "resnet20", "--out", "o"],
    "landscape": ["landscape", "--model", "m.keras", "--out", "o"],
    "analyze": ["analyze", "--model", "m.keras", "--out", "o"],
}
OLD_VALUES = {"--run-dir": "r", "--models": "resnet20", "--seed": "3"}


@pytest.mark.parametrize(
    "command,old,new",
    [(c, old, new) for c, names in DEPRECATED.items() for old, new in names.items()],
)
def test_a_deprecated_flag_does_what_its_successor_does_and_says_so_once(
    command, old, new
):
    value = OLD_VALUES.get(old, "7")
    today = [*MINIMAL[command], new, value]
    if new in MINIMAL[command]:  # the successor is in the minimal command
        at = MINIMAL[command].index(new)
        today = [*MINIMAL[command][:at], new, value, *MINIMAL[command][at + 2 :]]
    at = today.index(new)
    yesterday = [*today[:at], old, *today[at + 1 :]]
    err = io.StringIO()
    modern = modernize([*yesterday, f"{old}={value}"], err)
    assert modern == [*today, f"{new}={value}"]
    (notice,) = err.getvalue().splitlines()  # one line, however often used
    assert notice == (
        f"keras-damped {command}: {old} is deprecated and will be removed in "
        f"{REMOVED_IN}: use {new}"
    )
    parser = build_parser()
    assert parser.parse_args(modernize(yesterday, io.StringIO())) == (
        parser.parse_args(today)
    )
    # Another command's flag of the same name is left alone.
    assert modernize(["models", old], io.StringIO()) == ["models", old]


def test_an_old_name_runs_through_the_command_with_its_notice(tmp_path, capsys):
    out = tmp_path / "s"
    code = run(["study", "--models", "resnet20,resnet21", "--out", str(out)])
    assert code == 2 and not out.exists()
    err = capsys.readouterr().err
    assert "--models is deprecated" in err and "use --model" in err
    assert "Unknown model(s) ['resnet21']" in err


def test_the_commands_defaults_are_the_configs_defaults():
    """Each default is declared once, in the config dataclass: the command
    with no options builds the library's default config."""
    from keras_damped.cli import evaluate
    from keras_damped.cli import study
    from keras_damped.cli import train
    from keras_damped.robustness import EvalConfig
    from keras_damped.study.config import SEEDS
    from keras_damped.study.config import StudyConfig
    from keras_damped.training import TrainConfig

    parser = build_parser()
    assert evaluate.config(parser.parse_args(MINIMAL["evaluate"])) == (
        EvalConfig().validate()
    )
    assert train.config(parser.parse_args(MINIMAL["train"])) == TrainConfig(run_dir="r")
    built = study.config(parser.parse_args(MINIMAL["study"]))
    library = StudyConfig(models=["resnet20"], seeds=list(SEEDS), out="o")
    assert built.evaluation == library.evaluation.validate()
    for name in ("seeds", "baseline", "threads", "landscape", "compare_with"):
        assert getattr(built, name) == getattr(library, name), name
    # The study validates on its evaluation's test images.
    expected = dataclasses.replace(library.train, test_limit=EvalConfig.test_limit)
    assert built.train == expected
    # Several models: repeated, comma-separated, or both.
    argv = ["study", "--model", "resnet20,in_resnet20", "--model", "resnet56"]
    args = parser.parse_args([*argv, "--out", "o"])
    assert study.config(args).models == ["resnet20", "in_resnet20", "resnet56"]
