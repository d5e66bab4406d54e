"""Spawn options the machine can honour: nothing offered that the limits could not give."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from vanotebook import VanotebookInputError
from vanotebook.hub._config import PROFILES, machine_profiles
from vanotebook.hub._spawner import GatewaySpawner

GIB = 2**30


def test_a_two_core_machine_without_gpu_offers_only_small():
    kept, dropped = machine_profiles(PROFILES, cpus=2, memory=24 * GIB, gpus=0)
    assert list(kept) == ["small"]
    assert any(d.startswith("large (needs more cores") for d in dropped)
    assert any(d.startswith("gpu (needs more cores and GPUs") for d in dropped)


def test_a_gpu_machine_offers_everything():
    kept, dropped = machine_profiles(PROFILES, cpus=16, memory=128 * GIB, gpus=1)
    assert list(kept) == ["small", "large", "gpu"] and dropped == []


def test_a_tiny_machine_gets_a_profile_cut_to_its_size():
    kept, _ = machine_profiles(PROFILES, cpus=1, memory=2 * GIB, gpus=0)
    assert kept == {"small": {**PROFILES["small"], "cpu": 1, "mem": "2G", "gpu": 0,
                              "display_name": "Small: 1 core(s), 2 GiB"}}


def test_the_spawner_refuses_a_profile_it_does_not_offer():
    spawner = SimpleNamespace(user_options={"profile": "gpu"}, default_profile="small",
                              profiles={"small": PROFILES["small"]})
    with pytest.raises(VanotebookInputError, match=r"^profile: expected one of \('small',\)"):
        GatewaySpawner.profile.fget(spawner)
    spawner.user_options = {}
    assert GatewaySpawner.profile.fget(spawner)["mem"] == "4G"
