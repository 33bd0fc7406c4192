"""Configs are values: no two default-constructed models or configs share mutable state."""

from __future__ import annotations

import dataclasses

import pytest

from moodsong.models.conditional_rbm import ConditionalRBM
from moodsong.models.rbm import RBM, RBMConfig
from moodsong.models.rnnrbm import RNNRBM, RNNRBMConfig
from moodsong.models.wavenet import WaveNetConfig, WaveNetNADE
from moodsong.training.rbm import TrainConfig
from moodsong.training.sequence import TemporalTrainConfig


@pytest.mark.parametrize("cls", [RBM, ConditionalRBM, RNNRBM, WaveNetNADE])
def test_default_models_do_not_share_their_config(cls):
    a, b = cls(), cls()
    assert a.config is not b.config
    assert a.config == b.config
    first = dataclasses.fields(a.config)[0].name  # num_timesteps / num_visible: an int in every config
    setattr(a.config, first, getattr(a.config, first) + 1)
    assert getattr(b.config, first) == getattr(cls().config, first)


@pytest.mark.parametrize("cls", [TrainConfig, TemporalTrainConfig, WaveNetConfig])
def test_default_configs_are_separate_values(cls):
    a, b = cls(), cls()
    assert a is not b and a == b
    for f in dataclasses.fields(a):
        v = getattr(a, f.name)
        assert not isinstance(v, (list, dict, set)) or v is not getattr(b, f.name), f.name


def test_wavenet_dilations_are_a_tuple():
    assert isinstance(WaveNetConfig().dilations, tuple)
    given = [1, 2, 4]
    cfg = WaveNetConfig(dilations=given)
    given.append(8)  # the caller's list does not reach into the config
    assert cfg.dilations == (1, 2, 4)
    assert WaveNetConfig.from_dict(cfg.to_dict()) == cfg  # JSON turns the tuple into a list; loading turns it back


@pytest.mark.parametrize("module,cls", [("training.rbm", TrainConfig), ("training.sequence", TemporalTrainConfig),
                                        ("models.wavenet", WaveNetConfig), ("models.rbm", RBMConfig),
                                        ("models.rnnrbm", RNNRBMConfig)])
def test_cli_defaults_are_the_library_defaults(module, cls):
    from moodsong.cli.defaults import defaults

    read = defaults(module, cls.__name__)
    made = cls()
    assert read and all(getattr(made, k) == v for k, v in read.items()), read
    literal = {f.name for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
    assert literal <= set(read)  # every plain default reached the CLI


def test_train_seq_dilation_defaults_make_the_library_default():
    from moodsong.cli import train_temporal as cli

    one = [int(x) for x in next(p for p in cli.train_seq.params if p.name == "dilations").default.split(",")]
    stacks = next(p for p in cli.train_seq.params if p.name == "stacks").default
    assert tuple(one * stacks) == WaveNetConfig().dilations
