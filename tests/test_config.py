from pathlib import Path

import pytest

from she_bench.config import ConfigError, list_recipes, make_config, parse_overrides


def test_overrides_are_typed_and_nested():
    cfg = make_config("srpo", parse_overrides(["rl.group_size=4", "reward.step_weight=0", "filter.pass_band=[0.1, 0.8]"]))
    assert cfg.rl.group_size == 4 and cfg.reward.step_weight == 0.0 and isinstance(cfg.reward.step_weight, float)
    assert cfg.filter.pass_band == [0.1, 0.8] and cfg.name == "srpo"


@pytest.mark.parametrize("bad, message", [
    (["rl.nosuch=1"], "unknown key 'nosuch'"),
    (["rl.group_size=many"], "expected int"),
    (["seed"], "not key=value"),
])
def test_bad_overrides_name_the_key(bad, message):
    with pytest.raises(ConfigError, match=message):
        make_config("srpo", parse_overrides(bad))


def test_float_fields_take_every_number_form():
    for raw in ("1e-3", "5E-5", ".5", "1.0e-5", "2", "1.0e5"):
        cfg = make_config("srpo", parse_overrides([f"train.lr={raw}", f"rl.advantage_clip={raw}"]))
        assert cfg.train.lr == float(raw) and type(cfg.train.lr) is float, raw
        assert cfg.rl.advantage_clip == float(raw), raw
    for raw in ("1e-3", "5E-1", ".5", "0"):
        assert make_config("srpo", parse_overrides([f"filter.pass_band=[{raw}, 1]"])).filter.pass_band == [float(raw), 1.0]
    with pytest.raises(ConfigError, match=r"train\.lr: expected > 0, got -0\.001"):  # read as a number, then refused
        make_config("srpo", parse_overrides(["train.lr=-1e-3"]))
    for bad in ("fast", "true", "nan", "1e"):  # text stays text, and a bool is no number
        with pytest.raises(ConfigError, match=r"train\.lr: expected float"):
            make_config("srpo", parse_overrides([f"train.lr={bad}"]))
    with pytest.raises(ConfigError, match=r"rl\.group_size: expected int"):
        make_config("srpo", parse_overrides(["rl.group_size=1e3"]))


def test_recipe_float_fields_take_exponents(tmp_path):
    recipe = tmp_path / "fast.yaml"
    recipe.write_text("inherit: srpo\ntrain: {lr: 1e-3}\nwarm_start: {lr: 5E-4}\n")
    cfg = make_config(str(recipe))
    assert cfg.train.lr == 1e-3 and cfg.warm_start.lr == 5e-4 and cfg.name == "fast" and cfg.method == "srpo"


def test_every_recipe_resolves_and_variants_inherit():
    names = list_recipes()
    assert {"sft", "dpo", "grpo", "srpo", "she", "warm-start", "she-no-grm", "she-scalar"} <= set(names)
    hashes = {make_config(n).hash() for n in names}
    assert len(hashes) == len(names)  # every recipe is a distinct run
    she, scalar = make_config("she"), make_config("she-scalar")
    assert scalar.reward.scalar and not she.reward.scalar
    assert scalar.filter == she.filter and scalar.curriculum == she.curriculum


def test_hash_ignores_where_outputs_go_and_how_rollouts_run():
    base = make_config("srpo")
    assert make_config("srpo", {"output_dir": "elsewhere", "rl": {"use_vllm": True}}).hash() == base.hash()
    assert make_config("srpo", {"rl": {"group_size": 4}}).hash() != base.hash()


def test_vllm_rollouts_refuse_cpu():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    from she_bench.methods.grpo import vllm_kwargs

    assert vllm_kwargs(make_config("srpo")) == {}
    with pytest.raises(ConfigError, match="needs a GPU"):
        vllm_kwargs(make_config("srpo", {"rl": {"use_vllm": True}}))


CARD = str(Path(__file__).parent / "fixtures" / "toyshop-tiny.yaml")


@pytest.mark.parametrize("override, field, accepts", [
    ("train.max_steps=-3", "train.max_steps", ">= 1"),
    ("train.max_steps=0", "train.max_steps", ">= 1"),
    ("eval.limit=-5", "eval.limit", ">= 1"),
    ("eval.limit=0", "eval.limit", ">= 1"),
    ("reward.grm_error_rate=1.5", "reward.grm_error_rate", "[0, 1]"),
    ("reward.grm_error_rate=-0.1", "reward.grm_error_rate", "[0, 1]"),
    ("train.lr=-1e-4", "train.lr", "> 0"),
    ("train.lr=0", "train.lr", "> 0"),
    ("train.prompts_per_step=0", "train.prompts_per_step", ">= 1"),
    ("rl.group_size=1", "rl.group_size", ">= 2"),
    ("reward.mixing=nonsense", "reward.mixing", "one of verifier_first, weighted, verifier_only, grm_only"),
    ("reward.format=strict", "reward.format", "one of gate, penalty, off"),
    ("reward.grm=human", "reward.grm", "one of oracle, generative, judge"),
    ("reward.class_weights=inverse", "reward.class_weights", "one of none, balanced"),
    ("rl.loss_type=ppo", "rl.loss_type", "one of grpo, bnpo, dr_grpo, dapo"),
    ("rl.scale_rewards=std", "rl.scale_rewards", "one of group, batch, none"),
    ("rl.vllm_mode=remote", "rl.vllm_mode", "one of colocate, server"),
    ("filter.stratum=brand", "filter.stratum", "one of label, category, query_type"),
    ("engine=onnx", "engine", "one of transformers, vllm"),
    ("prompt.style=json", "prompt.style", "one of steps, label"),
    ("train.report_to=wandb", "train.report_to", "one of none, tensorboard"),
    ("filter.pass_band=[0.9, 0.1]", "filter.pass_band", "low <= high"),
    ("filter.pass_band=[0.1]", "filter.pass_band", "low <= high"),
    ("filter.pass_band=[-0.1, 0.5]", "filter.pass_band", "0 <= low"),
    ("filter.pass_band=[0.5, 1.5]", "filter.pass_band", "high <= 1"),
    ("filter.stratum_cap=0", "filter.stratum_cap", "(0, 1]"),
    ("filter.rollouts=0", "filter.rollouts", ">= 1"),
    ("reward.verifier_steps=[item_facts]", "reward.verifier_steps", "relevance_judgment"),
    ('reward.grm_answers=[" +"]', "reward.grm_answers", "two distinct"),
    ('reward.grm_answers=[" +", " +"]', "reward.grm_answers", "two distinct"),
    ("reward.mix_weight=2", "reward.mix_weight", "[0, 1]"),
    ("reward.ordinal_credit=-0.5", "reward.ordinal_credit", "[0, 1]"),
    ("reward.step_weight=-1", "reward.step_weight", ">= 0"),
    ("reward.grm_epochs=0", "reward.grm_epochs", "> 0"),
    ("rl.temperature=0", "rl.temperature", "> 0"),
    ("rl.epsilon=0", "rl.epsilon", "> 0"),
    ("rl.beta=-0.1", "rl.beta", ">= 0"),
    ("rl.advantage_clip=0", "rl.advantage_clip", "> 0"),
    ("rl.tail_weight=0.5", "rl.tail_weight", ">= 1"),
    ("rl.max_completion_length=0", "rl.max_completion_length", ">= 1"),
    ("rl.vllm_gpu_memory_utilization=1.5", "rl.vllm_gpu_memory_utilization", "(0, 1]"),
    ("warm_start.epochs=-1", "warm_start.epochs", ">= 0"),
    ("warm_start.lr=0", "warm_start.lr", "> 0"),
    ("train.save_steps=0", "train.save_steps", ">= 1"),
    ("train.keep_checkpoints=0", "train.keep_checkpoints", ">= 1"),
    ("train.lora_dropout=1", "train.lora_dropout", "[0, 1)"),
    ("train.sft_epochs=0", "train.sft_epochs", "> 0"),
    ("eval.batch_size=0", "eval.batch_size", ">= 1"),
    ("eval.subset=0", "eval.subset", ">= 1"),
    ("eval.samples=-1", "eval.samples", ">= 0"),
    ("eval.temperature=0", "eval.temperature", "> 0"),
    ("prompt.item_fields=[]", "prompt.item_fields", "non-empty"),
    ("seed=-1", "seed", ">= 0"),
    ("curriculum=[{share: 0.5}]", "curriculum", "shares that sum to 1"),
    ("curriculum=[{share: 0.5}, {share: 1.0}]", "curriculum", "shares that sum to 1"),
    ("curriculum=[{share: 0}, {share: 1}]", "curriculum[0].share", "(0, 1]"),
    ("curriculum=[{method: she}]", "curriculum[0].method", "one of sft, sft-matched, dpo, grpo, srpo"),
    ("curriculum=[{pass_band: [0.1, 0.5]}]", "curriculum.pass_band", "filter.enabled"),
    ("curriculum=[{name: a/b}]", "curriculum[0].name", "without '/'"),
    # rules that need the card: checked once it is loaded, before any model is built
    ("eval.split=validation", "eval.split", "a split of toyshop-tiny"),
    ("curriculum=[{slices: [rare]}]", "curriculum.slices", "slices of toyshop-tiny (head, tail, unseen_combo)"),
    ("prompt.item_fields=[titel]", "prompt.item_fields", "product fields of toyshop-tiny"),
])
def test_out_of_range_value_is_one_error_line(tmp_path, capsys, override, field, accepts):
    from she_bench.cli import main

    code = main(["run", "--method", "srpo", "--benchmark", CARD, "--output-dir", str(tmp_path / "runs"), override])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("she-bench: error: "), err
    assert f"{field}: expected " in err and accepts in err, err
    assert not (tmp_path / "runs").exists()  # refused before anything was built or written


def test_verifier_steps_must_be_annotated_by_the_card(tmp_path, capsys):
    from she_bench.cli import main

    card = tmp_path / "two-steps.yaml"
    card.write_text(Path(CARD).read_text().replace("name: toyshop-tiny", "name: two-steps")
                    + "annotated_steps: [item_understanding, relevance_judgment]\n")
    argv = ["run", "--method", "srpo", "--benchmark", str(card), "--output-dir", str(tmp_path / "runs")]
    assert main([*argv, "reward.verifier_steps=[query_understanding]"]) == 2
    err = capsys.readouterr().err
    assert "reward.verifier_steps: expected steps that two-steps annotates (item_understanding, relevance_judgment)" in err
    assert not (tmp_path / "runs").exists()


def test_invalid_yaml_override_is_one_error_line():
    with pytest.raises(ConfigError, match=r"override 'curriculum=\[\{share:': the value is not valid YAML"):
        parse_overrides(["curriculum=[{share:"])


def test_values_at_the_edge_of_a_range_are_accepted():
    cfg = make_config("she", parse_overrides([
        "train.max_steps=1", "eval.limit=1", "reward.grm_error_rate=0", "reward.mix_weight=1", "rl.group_size=2",
        "filter.pass_band=[0.5, 0.5]", "filter.stratum_cap=1", "warm_start.epochs=0", "rl.beta=0", "eval.samples=0",
        "curriculum=[{share: 0.25}, {share: 0.75, method: grpo}]", "reward.verifier_steps=[]"]))
    assert cfg.train.max_steps == 1 and [s.share for s in cfg.curriculum] == [0.25, 0.75]


def test_every_ranged_field_declares_a_rule_its_default_passes():
    import dataclasses
    import typing

    from she_bench import config as c

    def walk(cls):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            inner = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
            if dataclasses.is_dataclass(inner[0]):
                yield from walk(inner[0])
            elif typing.get_args(inner[0]) and dataclasses.is_dataclass(typing.get_args(inner[0])[0]):
                yield from walk(typing.get_args(inner[0])[0])
            else:
                yield cls, f, inner[0]

    numeric = [(cls.__name__, f.name) for cls, f, tp in walk(c.Config) if tp in (int, float) and "rule" not in f.metadata]
    assert not numeric  # every count, rate and share says what it accepts
    c.validate(c.Config())
    for cls in (c.EvalConfig, c.PromptConfig, c.WarmStartConfig, c.TrainConfig, c.RLConfig, c.RewardConfig,
                c.FilterConfig, c.StageConfig):
        obj = cls()
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            assert "rule" not in f.metadata or value is None or f.metadata["rule"].ok(value), (cls.__name__, f.name)


def test_enumerations_are_the_implementations_names():
    from she_bench import config as c
    from she_bench.data.schema import STEPS
    from she_bench.methods import get_method
    from she_bench.rewards.grm import GRMS

    assert c.STEP_NAMES == tuple(STEPS)
    assert set(c.GRM_KINDS) == set(GRMS.names())
    for name in c.STAGE_METHODS:
        assert not getattr(get_method(name), "classic", False)


def test_where_curves_go_leaves_the_run_identity_unchanged():
    base = make_config("srpo")
    assert make_config("srpo", {"train": {"report_to": "tensorboard"}}).hash() == base.hash()


def test_tensorboard_without_the_package_is_refused(monkeypatch):
    from she_bench import config

    monkeypatch.setattr(config, "_tensorboard_installed", lambda: False)
    with pytest.raises(ConfigError, match=r"srpo\.train\.report_to: expected tensorboard only with the tensorboard "
                                          r"package installed \(pip install -c constraints.txt -e '\.\[tensorboard\]'\)"):
        make_config("srpo", parse_overrides(["train.report_to=tensorboard"]))
    assert make_config("srpo").train.report_to == "none"


def test_rl_seed_at_its_default_leaves_run_hashes_as_they_were():
    # the hashes of runs made before rl.seed existed (their folders and evidence lines are keyed by them)
    base = {"benchmark": "toyshop", "model": "toy-1m", "seed": 0}
    assert make_config("srpo", base).hash() == "7fce1a341b"
    assert make_config("grpo", base).hash() == "97b78dcf59"
    assert make_config("srpo", {**base, "rl": {"seed": None}}).hash() == "7fce1a341b"
    moved = make_config("srpo", {**base, "rl": {"seed": 3}})
    assert moved.hash() != "7fce1a341b" and moved.rl_seed == 3 and make_config("srpo", base).rl_seed == 0


def test_rl_seed_out_of_range_is_refused():
    with pytest.raises(ConfigError, match="rl.seed"):
        make_config("srpo", {"rl": {"seed": -1}})


def test_an_unknown_name_is_one_error_line_and_a_bug_keyerror_a_traceback(monkeypatch, capsys):
    from she_bench import cli

    assert cli.main(["data", "describe", "no-such-card"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["she-bench: error: unknown benchmark 'no-such-card' (known: " + err[0].split("(known: ", 1)[1]]

    def buggy(args):
        return {}["missing"]  # a KeyError from a bug, not from user input

    monkeypatch.setitem(cli.COMMANDS, "data", buggy)
    with pytest.raises(KeyError, match="missing"):
        cli.main(["data", "list"])
