"""Typed configuration from dataclasses, TOML files and dotted command-line overrides.

A configuration is a (nested) ``@dataclass`` whose fields carry a help text::

    @dataclass
    class ModelConfig:
        cell: Literal["rnn", "lstm", "gru"] = option("lstm", "recurrent cell")
        hidden_size: int = option(256, "units per layer")

        def __post_init__(self) -> None:
            positive(self, "hidden_size")

    @dataclass
    class TrainConfig:
        lr: float = option(1e-3, "learning rate")
        betas: tuple[float, float] = option((0.9, 0.999), "Adam betas")
        seed: int | None = option(None, "random seed; none picks one")
        model: ModelConfig = option(ModelConfig(), "the network")

The matching TOML file names only what differs from the defaults; a nested dataclass is a
table::

    lr = 3e-4
    betas = [0.9, 0.98]

    [model]
    cell = "gru"

``load(TrainConfig, "run.toml", ["model.hidden_size=512", "--seed=none"])`` reads the file,
applies the overrides (the value text is read according to the field's type: numbers,
booleans ``true/false/yes/no/on/off/1/0``, ``none``/``null`` for optional fields, lists as
``[1, 2]`` or ``1,2``) and builds the instance. Unknown keys, wrong types and the values
refused by a dataclass's own ``__post_init__`` all raise ``ConfigError`` with one line naming
the dotted key.
``to_dict``/``dumps_toml`` write a config back (``None`` is left out of TOML) and ``describe``
lists every key with its default and help. Define config classes at module level: their
annotations are resolved with ``typing.get_type_hints``.
"""

from rnnkit.config._read import from_dict, load
from rnnkit.config._schema import ConfigError, in_unit_interval, non_negative, option, positive
from rnnkit.config._write import describe, dumps_toml, to_dict

__all__ = [
    "ConfigError", "describe", "dumps_toml", "from_dict", "in_unit_interval", "load",
    "non_negative", "option", "positive", "to_dict",
]
