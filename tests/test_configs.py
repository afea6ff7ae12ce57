"""Every config shipped under configs/ loads: no unknown key, no wrong type, no bad value."""

from pathlib import Path

import pytest

from rnnkit import config
from rnnkit.tasks.classify import ClassifyConfig
from rnnkit.tasks.lm import LMConfig
from rnnkit.tasks.tag import TagConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TASKS = {"charlm": LMConfig, "wordlm": LMConfig, "classify": ClassifyConfig, "tag": TagConfig}


def test_every_config_folder_is_a_known_task():
    assert sorted(p.name for p in CONFIGS.iterdir() if p.is_dir()) == sorted(TASKS)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*/*.toml")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_loads(path):
    cfg = config.load(TASKS[path.parent.name], path, [])
    assert cfg.train.max_steps > 0


def test_the_bf16_word_model_config_asks_for_bf16():
    cfg = config.load(LMConfig, CONFIGS / "wordlm" / "bf16.toml", [])
    assert cfg.train.amp == "bf16" and cfg.model.hidden_size == 400 and cfg.model.tie_weights
    assert cfg.model.softmax_cutoffs == [2000, 6000]
