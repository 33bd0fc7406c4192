"""Configs are values: no two default-constructed models or configs share mutable state."""

from __future__ import annotations

import dataclasses

import pytest

from moodsong.models.conditional_rbm import ConditionalRBM
from moodsong.models.rbm import RBM
from moodsong.models.rnnrbm import RNNRBM
from moodsong.models.wavenet import WaveNetConfig, WaveNetNADE
from moodsong.train import TrainConfig
from moodsong.train_temporal import TemporalTrainConfig


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
