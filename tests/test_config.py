from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Literal

import pytest

from rnnkit.config import (
    ConfigError,
    describe,
    dumps_toml,
    from_dict,
    in_unit_interval,
    load,
    non_negative,
    option,
    positive,
    to_dict,
)

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


@dataclass
class Model:
    cell: Literal["rnn", "lstm", "gru"] = option("lstm", "recurrent cell")
    hidden_size: int = option(128, "units per layer")
    dropout: float = option(0.0, "dropout between layers")
    layer_norm: bool = option(False, "normalise the gates")
    sizes: list[int] = option([1, 2], "sizes of something")

    def __post_init__(self) -> None:
        positive(self, "hidden_size")
        in_unit_interval(self, "dropout")


@dataclass
class Optim:
    lr: float = option(1e-3, "learning rate")
    betas: tuple[float, float] = option((0.9, 0.999), "Adam betas")
    clip: float | None = option(None, "gradient norm clip; none for no clipping")


@dataclass
class Train:
    name: str = option("run", "run name")
    steps: int = option(100, "optimiser steps")
    seed: int | None = option(None, "random seed")
    tags: list[str] = option([], "free-form tags")
    model: Model = option(Model(), "the network")
    optim: Optim = option(Optim(), "the optimiser")

    def __post_init__(self) -> None:
        positive(self, "steps")


@dataclass
class Pair:
    small: Model = option(Model(hidden_size=8), "the small one")
    width: int = option(3, "a width")


@dataclass
class Required:
    size: int


def write(tmp_path, text: str):
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def error_of(fn, *args) -> str:
    with pytest.raises(ConfigError) as info:
        fn(*args)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_defaults_and_fresh_mutable_defaults():
    assert from_dict(Train, {}) == Train() == load(Train)
    a, b = Train(), Train()
    assert a.model is not b.model and a.tags is not b.tags and a.model.sizes is not b.model.sizes
    assert a.model == Model() and a.optim.betas == (0.9, 0.999)


def test_load_toml_file(tmp_path):
    path = write(tmp_path, 'name = "x"\nsteps = 7\ntags = ["a"]\n\n[model]\ncell = "gru"\n'
                           'hidden_size = 64\n\n[optim]\nlr = 3e-4\nbetas = [0.8, 0.9]\n')
    cfg = load(Train, str(path))
    assert cfg == Train(name="x", steps=7, tags=["a"], model=Model(cell="gru", hidden_size=64),
                        optim=Optim(lr=3e-4, betas=(0.8, 0.9)))
    assert load(Train, path) == cfg  # a Path works too


def test_overrides_win_over_the_file(tmp_path):
    path = write(tmp_path, "steps = 7\n[model]\nhidden_size = 64\n")
    cfg = load(Train, path, ["model.hidden_size=512", "--steps=9", "model.dropout=0.5"])
    assert (cfg.steps, cfg.model.hidden_size, cfg.model.dropout, cfg.model.cell) == (9, 512, 0.5, "lstm")


@pytest.mark.parametrize("text, get, expected", [
    ("steps=5", lambda c: c.steps, 5),
    ("--steps=1_000", lambda c: c.steps, 1000),
    ("optim.lr=1e-3", lambda c: c.optim.lr, 1e-3),
    ("optim.lr=2", lambda c: c.optim.lr, 2.0),
    ("model.layer_norm=true", lambda c: c.model.layer_norm, True),
    ("model.layer_norm=Yes", lambda c: c.model.layer_norm, True),
    ("model.layer_norm=1", lambda c: c.model.layer_norm, True),
    ("model.layer_norm=no", lambda c: c.model.layer_norm, False),
    ("model.layer_norm=false", lambda c: c.model.layer_norm, False),
    ("name=hello world=2", lambda c: c.name, "hello world=2"),
    ("name=", lambda c: c.name, ""),
    ("seed=7", lambda c: c.seed, 7),
    ("seed=none", lambda c: c.seed, None),
    ("optim.clip=null", lambda c: c.optim.clip, None),
    ("optim.clip=0.25", lambda c: c.optim.clip, 0.25),
    ("model.cell=gru", lambda c: c.model.cell, "gru"),
    ("optim.betas=0.8, 0.95", lambda c: c.optim.betas, (0.8, 0.95)),
    ("optim.betas=[0.5, 1]", lambda c: c.optim.betas, (0.5, 1.0)),
    ("model.sizes=[4, 8]", lambda c: c.model.sizes, [4, 8]),
    ("model.sizes=4,8,16", lambda c: c.model.sizes, [4, 8, 16]),
    ("model.sizes=", lambda c: c.model.sizes, []),
    ("tags=a,b", lambda c: c.tags, ["a", "b"]),
    ('tags=["x, y"]', lambda c: c.tags, ["x, y"]),
])
def test_override_of_every_type(text, get, expected):
    value = get(load(Train, None, [text]))
    assert value == expected and type(value) is type(expected)


def test_unknown_key_suggests_the_nearest(tmp_path):
    expected = "unknown config key 'model.hiden_size'; did you mean 'model.hidden_size'?"
    assert error_of(from_dict, Train, {"model": {"hiden_size": 3}}) == expected
    assert error_of(load, Train, None, ["model.hiden_size=3"]) == expected
    assert error_of(load, Train, write(tmp_path, "[model]\nhiden_size = 3\n")) == expected
    assert error_of(load, Train, None, ["step=3"]) == "unknown config key 'step'; did you mean 'steps'?"
    assert error_of(load, Train, None, ["modle.cell=gru"]) == (
        "unknown config key 'modle'; did you mean 'model'?")


def test_unknown_key_without_a_near_one_lists_the_valid_keys():
    assert error_of(from_dict, Optim, {"zzzzzz": 1}) == (
        "unknown config key 'zzzzzz'; valid keys: lr, betas, clip")


@pytest.mark.parametrize("data, expected", [
    ({"model": {"hidden_size": "abc"}}, "model.hidden_size: expected int, got 'abc' (str)"),
    ({"model": {"hidden_size": 2.0}}, "model.hidden_size: expected int, got 2.0 (float)"),
    ({"steps": True}, "steps: expected int, got True (bool)"),
    ({"optim": {"lr": False}}, "optim.lr: expected float, got False (bool)"),
    ({"model": {"layer_norm": 1}}, "model.layer_norm: expected bool, got 1 (int)"),
    ({"model": {"layer_norm": "true"}}, "model.layer_norm: expected bool, got 'true' (str)"),
    ({"name": 3}, "name: expected str, got 3 (int)"),
    ({"seed": "x"}, "seed: expected int | None, got 'x' (str)"),
    ({"model": 3}, "model: expected table, got 3 (int)"),
    ({"optim": {"betas": [0.9]}}, "optim.betas: expected tuple[float, float], got [0.9] (list)"),
    ({"optim": {"betas": 0.9}}, "optim.betas: expected tuple[float, float], got 0.9 (float)"),
    ({"model": {"sizes": [1, "a"]}}, "model.sizes[1]: expected int, got 'a' (str)"),
    ({"tags": "a"}, "tags: expected list[str], got 'a' (str)"),
])
def test_wrong_types_are_refused_with_key_type_and_value(data, expected):
    assert error_of(from_dict, Train, data) == expected


@pytest.mark.parametrize("text, expected", [
    ("model.hidden_size=abc", "model.hidden_size: expected int, got 'abc' (str)"),
    ("model.hidden_size=1.5", "model.hidden_size: expected int, got '1.5' (str)"),
    ("steps=none", "steps: expected int, got 'none' (str)"),
    ("optim.lr=fast", "optim.lr: expected float, got 'fast' (str)"),
    ("model.layer_norm=maybe", "model.layer_norm: expected bool, got 'maybe' (str)"),
    ("model.sizes=1,x", "model.sizes[1]: expected int, got 'x' (str)"),
    ("optim.betas=1,2,3", "optim.betas: expected tuple[float, float], got [1.0, 2.0, 3.0] (list)"),
])
def test_wrong_override_text_is_refused(text, expected):
    assert error_of(load, Train, None, [text]) == expected


def test_int_for_float_is_accepted_and_stored_as_float():
    cfg = from_dict(Train, {"optim": {"lr": 1, "betas": [1, 0], "clip": 2}})
    assert cfg.optim.lr == 1.0 and type(cfg.optim.lr) is float
    assert cfg.optim.betas == (1.0, 0.0) and all(type(b) is float for b in cfg.optim.betas)
    assert type(cfg.optim.clip) is float


def test_optional_accepts_none():
    assert from_dict(Train, {"seed": None, "optim": {"clip": None}}).seed is None
    assert from_dict(Train, {"seed": 3}).seed == 3


def test_literal_refuses_other_values_listing_the_choices():
    expected = "model.cell: expected one of 'rnn', 'lstm', 'gru', got 'lsmt' (str)"
    assert error_of(load, Train, None, ["model.cell=lsmt"]) == expected
    assert error_of(from_dict, Train, {"model": {"cell": "lsmt"}}) == expected


def test_post_init_value_errors_name_the_section():
    assert error_of(load, Train, None, ["model.hidden_size=0"]) == (
        "model: hidden_size must be > 0, got 0")
    assert error_of(load, Train, None, ["model.dropout=1"]) == (
        "model: dropout must be in [0, 1), got 1.0")
    assert error_of(from_dict, Train, {"steps": -2}) == "Train: steps must be > 0, got -2"
    assert error_of(from_dict, Model, {"hidden_size": 0}, "net.model") == (
        "net.model: hidden_size must be > 0, got 0")


def test_value_helpers():
    @dataclass
    class Numbers:
        a: float = 1.0
        b: float | None = None

    positive(Numbers(), "a", "b")  # None is skipped
    non_negative(Numbers(a=0.0), "a")
    in_unit_interval(Numbers(a=0.0), "a")
    with pytest.raises(ValueError, match=r"^a must be >= 0, got -1.0$"):
        non_negative(Numbers(a=-1.0), "a")
    with pytest.raises(ValueError, match=r"^a must be > 0, got 0.0$"):
        positive(Numbers(a=0.0), "a")
    with pytest.raises(ValueError, match=r"^b must be in \[0, 1\), got -0.5$"):
        in_unit_interval(Numbers(a=0.5, b=-0.5), "a", "b")
    with pytest.raises(ValueError, match="a must be > 0, got nan"):
        positive(Numbers(a=math.nan), "a")


def test_missing_required_key():
    assert error_of(from_dict, Required, {}) == "missing config key 'size'"
    assert from_dict(Required, {"size": 2}) == Required(2)


@pytest.mark.parametrize("text, expected", [
    ("steps", "override 'steps' must look like key=value, e.g. model.hidden_size=8"),
    ("=3", "override '=3' must look like key=value, e.g. model.hidden_size=8"),
    ("model=3", "override 'model=3': 'model' is a section; set model.<key>=value"),
    ("steps.x=3", "override 'steps.x=3': 'steps' is not a section"),
    ("model.sizes=[1,", "model.sizes: cannot read '[1,' as a TOML array: "),
])
def test_malformed_overrides(text, expected):
    assert error_of(load, Train, None, [text]).startswith(expected)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    assert error_of(load, Train, str(path)) == (
        f"cannot read config file {path}: No such file or directory")


def test_bad_toml(tmp_path):
    message = error_of(load, Train, write(tmp_path, "steps = 3\nmodel = = 2\n"))
    assert message.startswith(f"{tmp_path / 'run.toml'}: invalid TOML: ")
    assert "line 2" in message


def test_to_dict_is_plain_and_json_ready():
    d = to_dict(Train(seed=1))
    assert d == {
        "name": "run", "steps": 100, "seed": 1, "tags": [],
        "model": {"cell": "lstm", "hidden_size": 128, "dropout": 0.0, "layer_norm": False, "sizes": [1, 2]},
        "optim": {"lr": 1e-3, "betas": [0.9, 0.999], "clip": None},
    }
    assert json.loads(json.dumps(d)) == d


def test_dumps_toml_round_trips():
    cfg = from_dict(Train, {
        "name": 'he said "hi"\n\tüñ \\ \x7f end', "steps": 3, "seed": -4, "tags": ["a", "b c"],
        "model": {"cell": "gru", "hidden_size": 5, "dropout": 0.125, "layer_norm": True, "sizes": []},
        "optim": {"lr": 1e-20, "betas": [0.5, 1e16], "clip": math.inf},
    })
    text = dumps_toml(cfg)
    assert from_dict(Train, tomllib.loads(text)) == cfg
    assert "[model]" in text and "[optim]" in text


def test_dumps_toml_leaves_out_none():
    text = dumps_toml(Train())
    assert "seed" not in text and "clip" not in text
    assert text.startswith('name = "run"\n')
    assert from_dict(Train, tomllib.loads(text)) == Train()


def test_describe_lists_every_leaf_with_default_and_help():
    assert describe(Train) == [
        ("name", "'run'", "run name"),
        ("steps", "100", "optimiser steps"),
        ("seed", "None", "random seed"),
        ("tags", "[]", "free-form tags"),
        ("model.cell", "'lstm'", "recurrent cell"),
        ("model.hidden_size", "128", "units per layer"),
        ("model.dropout", "0.0", "dropout between layers"),
        ("model.layer_norm", "False", "normalise the gates"),
        ("model.sizes", "[1, 2]", "sizes of something"),
        ("optim.lr", "0.001", "learning rate"),
        ("optim.betas", "(0.9, 0.999)", "Adam betas"),
        ("optim.clip", "None", "gradient norm clip; none for no clipping"),
    ]


def test_describe_uses_the_section_default_and_marks_required():
    rows = {key: (default, help) for key, default, help in describe(Pair)}
    assert rows["small.hidden_size"] == ("8", "units per layer")
    assert rows["width"] == ("3", "a width")
    assert describe(Required) == [("size", "required", "")]
