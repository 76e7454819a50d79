from dataclasses import dataclass, field
from pathlib import Path

import pytest

from videopoet.config import ConfigError, apply_overrides, from_dict, load_config, parse_override, to_dict


@dataclass(kw_only=True)
class Inner:
    width: int = 8  # channels
    name: str = "debug"  # preset


@dataclass(kw_only=True)
class Outer:
    lr: float = 1e-3  # learning rate
    steps: int = 10  # optimisation steps
    dims: tuple = (1, 2)  # a tuple field
    model: Inner = field(default_factory=Inner)  # nested config


def test_override_parsing_types():
    assert parse_override("lr=3e-4") == (["lr"], 3e-4)
    assert parse_override("model.name=tiny") == (["model", "name"], "tiny")
    assert parse_override("flag=true") == (["flag"], True)
    assert parse_override("dims=[1, 2, 3]") == (["dims"], [1, 2, 3])


def test_override_without_equals_is_clear_error():
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("lr")


def test_nested_from_dict_and_roundtrip():
    cfg = from_dict(Outer, apply_overrides({"lr": 0.1}, ["model.width=32", "dims=[4, 5]"]))
    assert cfg.lr == 0.1 and cfg.model.width == 32 and cfg.dims == (4, 5)
    assert from_dict(Outer, to_dict(cfg)) == cfg


def test_unknown_key_names_valid_keys():
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(Outer, {"learning_rate": 1.0})
    with pytest.raises(ConfigError, match=r"model.*unknown key"):
        from_dict(Outer, {"model": {"widht": 3}})


def test_load_config_from_toml(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('lr = 0.5\n[model]\nname = "tiny"\n')
    cfg = load_config(Outer, path, ["steps=7"])
    assert (cfg.lr, cfg.steps, cfg.model.name) == (0.5, 7, "tiny")


def test_missing_and_invalid_toml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(Outer, tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("lr = = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(Outer, bad)


@dataclass(kw_only=True)
class Mixed:
    weights: dict[str, float] = field(default_factory=lambda: {"a": 1.0, "b": 2.0})  # a mixture
    limit: int | None = 5  # optional
    model: dict = field(default_factory=dict)  # a free table
    inner: Inner = field(default_factory=Inner)  # nested config


@dataclass(kw_only=True)
class Nested:
    mixed: Mixed = field(default_factory=Mixed)  # a table holding a mixture


def test_set_changes_one_key_of_a_default_table(tmp_path):
    assert load_config(Mixed, None, ["weights.b=0"]).weights == {"a": 1.0, "b": 0.0}
    assert load_config(Nested, None, ["mixed.weights.a=3"]).mixed.weights == {"a": 3.0, "b": 2.0}
    assert load_config(Mixed, None, ["inner.width=4"]).inner == Inner(width=4)
    assert load_config(Mixed, None, ["model.depth=2"]).model == {"depth": 2}
    assert Mixed().weights == {"a": 1.0, "b": 2.0}  # the default itself is not touched
    path = tmp_path / "c.toml"
    path.write_text("[weights]\nc = 1.0\n")  # a file's table states the whole mixture
    assert load_config(Mixed, path, ["weights.d=2"]).weights == {"c": 1.0, "d": 2.0}


def test_set_none_clears_an_optional_field():
    assert load_config(Mixed, None, ["limit=none"]).limit is None
    assert load_config(Mixed, None, ["limit=null"]).limit is None
    assert load_config(Inner, None, ["name=none"]).name == "none"  # a str field keeps the word


def test_lm_task_mixture_override_keeps_the_other_tasks():
    from videopoet.train.lm import DEFAULT_MIX, LMTrainConfig

    root = Path(__file__).resolve().parents[1]
    cfg = load_config(LMTrainConfig, root / "configs" / "lm_debug.toml", ["tasks.stylization=0"])
    assert cfg.tasks == DEFAULT_MIX | {"stylization": 0.0}
    assert "stylization" not in {cfg.task_of_step(s) for s in range(200)}


def test_override_fields_checks_a_free_table_against_its_dataclass():
    from videopoet.config import override_fields

    base = Mixed(limit=5)
    assert override_fields(base, {"limit": "none"}).limit is None  # what `--set model.limit=none` holds
    assert override_fields(base, {"weights": {"z": 1}}).weights == {"z": 1.0}
    with pytest.raises(ConfigError, match="model.limit"):
        override_fields(base, {"limit": "five"})
    with pytest.raises(ConfigError, match="unknown key"):
        override_fields(base, {"limt": 3})


def test_component_presets_check_their_overrides_like_config_files():
    """from_preset of every model converts TOML values (a list → a tuple) and names an unknown key."""
    from videopoet.superres.model import SuperResTransformer
    from videopoet.tokenizers.audio import AudioTokenizer
    from videopoet.tokenizers.video import VideoTokenizer

    audio = AudioTokenizer.from_preset("debug", strides=[2, 4])
    assert audio.config.strides == (2, 4)  # a tuple again: the config stays hashable and comparable
    for cls in (VideoTokenizer, AudioTokenizer, SuperResTransformer):
        with pytest.raises(ConfigError, match="no_such_field"):
            cls.from_preset("debug", no_such_field=1)
