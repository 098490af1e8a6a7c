"""Config validation of the insertion envs (envs/config.py): every field is checked, by name."""

import dataclasses
import math
import re

import gymnasium as gym
import pytest
from omegaconf import OmegaConf

import envs
from envs.config import (
    PegInsertionConfig,
    RewardConfig,
    TaskConfig,
    make_peg_insertion_config,
    validate,
    validate_task_config,
)

NAN, INF = math.nan, math.inf

# (override, the field the error message must name). Nested sections are given as dicts.
BAD_CONFIGS = [
    # choices
    ({"robot": "ur5"}, "robot"),
    ({"robot": 3}, "robot"),
    ({"obs_mode": "pixels"}, "obs_mode"),
    ({"peg_shape": None}, "peg_shape"),
    ({"alignment_weight": -1.0}, "alignment_weight"),
    ({"alignment_weight": math.nan}, "alignment_weight"),
    ({"reward": {"kernel": "cubic"}}, "reward.kernel"),
    ({"sim": {"renderer": "opengl"}}, "sim.renderer"),
    # actions
    ({"max_translation": 1e6}, "max_translation"),
    ({"max_translation": 0.0}, "max_translation"),
    ({"max_translation": NAN}, "max_translation"),
    ({"max_rotation": 1.0}, "max_rotation"),
    ({"max_rotation": "5deg"}, "max_rotation"),
    ({"action_mask": [1, 1, 1, 0, 0, 2]}, "action_mask"),
    ({"action_mask": [1.0, 1, 1, 1, 1, 1]}, "action_mask"),
    ({"action_mask": [True] * 6}, "action_mask"),
    ({"action_mask": [0] * 6}, "action_mask"),
    ({"action_mask": [1, 1, 1]}, "action_mask"),
    ({"action_mask": "111111"}, "action_mask"),
    # keypoints, success, termination
    ({"num_keypoints": 2.7}, "num_keypoints"),
    ({"num_keypoints": 0}, "num_keypoints"),
    ({"num_keypoints": 10}, "num_keypoints"),  # 9 * 0.03 m does not fit on the 0.08 m peg
    ({"keypoint_spacing": 0.0}, "keypoint_spacing"),
    ({"success_lateral_tolerance": NAN}, "success_lateral_tolerance"),
    ({"success_depth_tolerance": -0.001}, "success_depth_tolerance"),
    ({"terminate_on_success": "no"}, "terminate_on_success"),
    ({"terminate_out_of_workspace": 1}, "terminate_out_of_workspace"),
    ({"workspace_radius": INF}, "workspace_radius"),
    # peg and hole
    ({"peg_radius": NAN}, "peg_radius"),
    ({"peg_radius": True}, "peg_radius"),
    ({"peg_length": INF}, "peg_length"),
    ({"clearance": -0.001}, "clearance"),
    ({"hole_depth": 0.0}, "hole_depth"),
    ({"hole_depth": 0.09}, "hole_depth"),  # deeper than the peg is long
    ({"hole_wall_thickness": "thick"}, "hole_wall_thickness"),
    ({"hole_xy_low": [0.5]}, "hole_xy_low"),
    ({"hole_xy_low": [NAN, 0.0]}, "hole_xy_low"),
    ({"hole_xy_high": [0.4, 0.0]}, "hole_xy_low"),  # below hole_xy_low: "hole_xy_low must be <= hole_xy_high"
    ({"hole_xy_high": "far"}, "hole_xy_high"),
    ({"hole_yaw_range": NAN}, "hole_yaw_range"),
    ({"hole_yaw_range": -0.1}, "hole_yaw_range"),
    ({"hole_yaw_range": 4.0}, "hole_yaw_range"),
    ({"start_low": [0.0] * 5}, "start_low"),
    ({"start_low": [0.0, 0.0, 0.0, 0.0, 0.0, INF]}, "start_low"),
    ({"start_high": [0.0, 0.0, 0.0, 0.0, 0.0, "x"]}, "start_high"),
    ({"start_high": [-0.05, 0.04, 0.08, 0.15, 0.15, 0.3]}, "start_low"),  # below start_low
    # reward
    ({"reward": {"kernel_params": [[NAN, 0.0]]}}, "reward.kernel_params"),
    ({"reward": {"kernel_params": [[10.0, INF]]}}, "reward.kernel_params"),
    ({"reward": {"kernel_params": [[10.0, -2.0]]}}, "reward.kernel_params"),  # 1 / (exp(ax) - 2 + exp(-ax)): 1/0
    ({"reward": {"kernel_params": [[0.0, 0.0]]}}, "reward.kernel_params"),
    ({"reward": {"kernel_params": [[-10.0, 0.0]]}}, "reward.kernel_params"),
    ({"reward": {"kernel_params": [[10.0]]}}, "reward.kernel_params"),
    ({"reward": {"kernel_params": [[10.0, "x"]]}}, "reward.kernel_params"),
    ({"reward": {"kernel_params": []}}, "reward.kernel_params"),
    ({"reward": {"linear_scale": NAN}}, "reward.linear_scale"),
    ({"reward": {"relative_to_goal": "yes"}}, "reward.relative_to_goal"),
    ({"reward": {"success_bonus": NAN}}, "reward.success_bonus"),
    ({"reward": {"success_bonus": INF}}, "reward.success_bonus"),
    ({"reward": {"action_penalty": -1.0}}, "reward.action_penalty"),
    ({"reward": {"contact_force_penalty": INF}}, "reward.contact_force_penalty"),
    # randomization
    ({"randomization": {"friction_range": [-0.1, 0.5]}}, "randomization.friction_range"),
    ({"randomization": {"friction_range": [0.8, 0.3]}}, "randomization.friction_range"),
    ({"randomization": {"friction_range": [0.5]}}, "randomization.friction_range"),
    ({"randomization": {"friction_range": [NAN, 0.5]}}, "randomization.friction_range"),
    ({"randomization": {"clearance_range": [-0.001, 0.002]}}, "randomization.clearance_range"),
    ({"randomization": {"clearance_range": [0.0, 0.002]}}, "randomization.clearance_range"),
    ({"randomization": {"peg_size_scale_range": [0, 0]}}, "randomization.peg_size_scale_range"),
    ({"randomization": {"peg_size_scale_range": [-1.0, 1.0]}}, "randomization.peg_size_scale_range"),
    ({"randomization": {"peg_size_scale_range": [1.2, 0.9]}}, "randomization.peg_size_scale_range"),
    ({"randomization": {"peg_size_scale_range": [0.4, 1.0]}}, "hole_depth"),  # the shortest peg fits in the hole
    ({"randomization": {"observation_noise_std": NAN}}, "randomization.observation_noise_std"),
    ({"randomization": {"observation_noise_std": -0.1}}, "randomization.observation_noise_std"),
    # sim
    ({"sim": {"time_step": NAN}}, "sim.time_step"),
    ({"sim": {"time_step": -0.01}}, "sim.time_step"),
    ({"sim": {"time_step": 1.0}}, "sim.time_step"),
    ({"sim": {"substeps": 2.5}}, "sim.substeps"),
    ({"sim": {"substeps": True}}, "sim.substeps"),
    ({"sim": {"substeps": 0}}, "sim.substeps"),
    ({"sim": {"solver_iterations": 10.5}}, "sim.solver_iterations"),
    ({"sim": {"solver_iterations": 0}}, "sim.solver_iterations"),
    ({"sim": {"solver_residual_threshold": 0.0}}, "sim.solver_residual_threshold"),
    ({"sim": {"solver_residual_threshold": 0.01}}, "sim.solver_residual_threshold"),
    ({"sim": {"solver_residual_threshold": math.nan}}, "sim.solver_residual_threshold"),
    ({"sim": {"collision_margin": 1.0}}, "sim.collision_margin"),
    ({"sim": {"collision_margin": -0.001}}, "sim.collision_margin"),
    ({"sim": {"contact_stiffness": -1.0, "contact_damping": 1.0}}, "sim.contact_stiffness"),
    ({"sim": {"contact_stiffness": 0.0, "contact_damping": 1.0}}, "sim.contact_stiffness"),
    ({"sim": {"contact_stiffness": 1e4, "contact_damping": -1.0}}, "sim.contact_damping"),
    ({"sim": {"contact_stiffness": 1e4, "contact_damping": NAN}}, "sim.contact_damping"),
    ({"sim": {"contact_stiffness": 1e4}}, "sim.contact_damping"),  # must be set together
    ({"sim": {"image_width": -5}}, "sim.image_width"),
    ({"sim": {"image_width": 320.0}}, "sim.image_width"),
    ({"sim": {"image_width": 5000}}, "sim.image_width"),
    ({"sim": {"image_height": 0}}, "sim.image_height"),
    # structure (build_config)
    ({"clearence": 0.001}, "clearence"),
    ({"sim": {"time_stepp": 0.01}}, "sim.time_stepp"),
    ({"sim": 0.01}, "sim"),
]
THROUGH_GYM_MAKE = [
    ({"sim": {"substeps": 2.5}}, "sim.substeps"),
    ({"max_translation": 1e6}, "max_translation"),
    ({"reward": {"kernel_params": [[10.0, NAN]]}}, "reward.kernel_params"),
    ({"terminate_on_success": "no"}, "terminate_on_success"),
]


def leaf_fields(cls, prefix=""):
    """Dotted names of every field of dataclass ``cls``, nested sections expanded."""
    names = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            names += leaf_fields(type(default), f"{prefix}{f.name}.")
        else:
            names.append(prefix + f.name)
    return names


@pytest.mark.parametrize("override, field", BAD_CONFIGS, ids=[f"{f}={o}" for o, f in BAD_CONFIGS])
def test_bad_config_names_the_field(override, field):
    with pytest.raises(ValueError, match=re.escape(field)):
        make_peg_insertion_config(**override)


@pytest.mark.parametrize("override, field", THROUGH_GYM_MAKE, ids=[f for _, f in THROUGH_GYM_MAKE])
def test_gym_make_rejects_bad_config(override, field):
    with pytest.raises(ValueError, match=re.escape(field)):
        gym.make(envs.PEG_INSERTION_ID, **override)


def test_every_field_has_a_bad_value_case():
    covered = {field for _, field in BAD_CONFIGS}
    assert [name for name in leaf_fields(PegInsertionConfig) if name not in covered] == []


def test_default_configs_validate():
    assert validate(PegInsertionConfig()) == PegInsertionConfig()
    assert validate_task_config(TaskConfig()) == TaskConfig()
    assert make_peg_insertion_config() == PegInsertionConfig()


def test_valid_non_default_config_validates():
    """The bounds are inclusive where documented, ints pass for floats and tuples for lists."""
    config = make_peg_insertion_config(
        robot="floating",
        obs_mode="flat",
        peg_shape="box",
        peg_radius=0.01,
        peg_length=1,
        clearance=0.0005,
        hole_yaw_range=math.pi,
        start_low=(0, 0, 0.01, 0, 0, 0),
        start_high=(0, 0, 0.01, 0, 0, 0),
        max_translation=0.05,
        max_rotation=math.pi / 4,
        action_mask=[1, 1, 1, 0, 0, 1],
        num_keypoints=5,
        keypoint_spacing=0.02,
        terminate_on_success=False,
        terminate_out_of_workspace=True,
        reward={"kernel": "linear", "linear_scale": 0, "kernel_params": [[5.0, -1.9]], "success_bonus": 0},
        randomization={
            "friction_range": [0.0, 1.5],
            "clearance_range": [0.0005, 0.003],
            "peg_size_scale_range": [0.8, 1.2],
            "observation_noise_std": 0.001,
        },
        sim={
            "time_step": 0.02,
            "substeps": 1,
            "solver_iterations": 1,
            "solver_residual_threshold": 1e-3,
            "collision_margin": 0.005,
            "contact_stiffness": 1e5,
            "contact_damping": 0,
            "renderer": "egl",
            "image_width": 4096,
            "image_height": 1,
        },
    )
    assert config.sim.contact_damping == 0 and config.randomization.friction_range == [0.0, 1.5]


def test_validate_checks_configs_built_directly():
    """``validate`` also guards configs that did not come through ``make_peg_insertion_config``."""
    with pytest.raises(ValueError, match=r"^reward must be a RewardConfig"):
        validate(PegInsertionConfig(reward={"kernel": "linear"}))
    with pytest.raises(ValueError, match=re.escape("reward.success_bonus")):
        validate(PegInsertionConfig(reward=RewardConfig(success_bonus=NAN)))
    with pytest.raises(ValueError, match=re.escape("sim.substeps")):
        validate_task_config(TaskConfig(sim=dataclasses.replace(TaskConfig().sim, substeps=2.5)))


def test_hydra_structured_config_validates():
    """The Hydra path: OmegaConf types the yaml against PegInsertionConfig, then ``validate`` checks ranges."""
    node = OmegaConf.structured(PegInsertionConfig)
    node.clearance = 1  # an int for a float field is converted by OmegaConf
    node.sim.collision_margin = 0.05
    with pytest.raises(ValueError, match=re.escape("sim.collision_margin")):
        validate(OmegaConf.to_object(node))
