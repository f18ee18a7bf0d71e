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
    for raw in ("1e-3", "5E-5", ".5", "1.0e-5", "2", "-1e-3", "1.0e5"):
        cfg = make_config("srpo", parse_overrides([f"train.lr={raw}", f"rl.advantage_clip={raw}", f"filter.pass_band=[{raw}, 1]"]))
        assert cfg.train.lr == float(raw) and type(cfg.train.lr) is float, raw
        assert cfg.rl.advantage_clip == float(raw) and cfg.filter.pass_band == [float(raw), 1.0], raw
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
