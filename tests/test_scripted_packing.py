"""The scripted packed-objects controllers (envs/scripted_packing.py) and scripts/scripted_packing.py.

Default layout: a row of 5 slots 0.044 m apart, the held box's slot in the middle at the tray origin.
"""

import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs.geometry import box_penetration, euler_to_matrix
from envs.scripted import run_episode
from envs.scripted_packing import ScriptedPackingPolicy, StraightDescentPolicy

ROOT = Path(__file__).resolve().parents[1]
PITCH = 0.044
GOAL_POSES = [[-2 * PITCH, 0.0, 0.0], [-PITCH, 0.0, 0.0], [PITCH, 0.0, 0.0], [2 * PITCH, 0.0, 0.0]]


def make(**kwargs):
    kwargs.setdefault("robot", "floating")
    return gym.make(envs.PACKED_OBJECTS_ID, **kwargs)


def slot_overlaps(env) -> list:
    """How far (m) each packed box reaches into the held box's empty slot."""
    cfg = env.unwrapped.config
    half = [cfg.box_half_size, cfg.box_half_size, cfg.box_height / 2]
    slot = (np.array([0.0, 0.0, half[2]]), np.eye(3), half)
    poses = env.unwrapped.get_start_state()["object_poses"]
    return [box_penetration(*slot, np.array([x, y, half[2]]), euler_to_matrix(0, 0, yaw), half) for x, y, yaw in poses]


def test_goal_poses_are_the_default_row():
    env = make()
    goals = env.unwrapped.task.goal_poses()
    np.testing.assert_allclose(goals["slot"], [0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(goals["object_poses"], GOAL_POSES, atol=1e-12)
    _, info = env.reset(seed=0, options={"object_poses": goals["object_poses"], "held_pose": [0, 0, 0.06, 0, 0, 0]})
    assert info["objects_in_place"] == 4


def test_push_then_insert_succeeds():
    env = make()
    policy = ScriptedPackingPolicy(env)
    results = [run_episode(env, policy, seed=seed)[0] for seed in range(5)]
    assert sum(results) >= 4, results


def test_push_then_insert_with_two_occluders():
    env = make(num_displaced=2)
    policy = ScriptedPackingPolicy(env)
    results = [run_episode(env, policy, seed=seed)[0] for seed in range(3)]
    assert sum(results) >= 2, results


def test_push_then_insert_with_the_panda():
    """Seed 2 pushes toward the arm: the box leans toward it, which brings the wrist near a singularity."""
    env = make(robot="panda")
    policy = ScriptedPackingPolicy(env)
    assert all(run_episode(env, policy, seed=seed)[0] for seed in (2, 6))


def test_straight_descent_is_blocked_by_the_occluder():
    env = make()
    env.reset(seed=0)
    assert max(slot_overlaps(env)) > 0.005, "seed 0 must start with an occluder in the slot"
    policy = StraightDescentPolicy(env)
    success, steps, _, _ = run_episode(env, policy, seed=0)
    assert not success and steps == envs.PACKED_OBJECTS_MAX_STEPS
    held_bottom_height = env.unwrapped.get_start_state()["held_pose"][2]
    assert held_bottom_height > 0.03, "the held box should rest on the occluder, far above the slot's floor"

    # The same controller inserts when nothing is in the way: the occluder is what stops it.
    success, _, _, _ = run_episode(env, policy, seed=0, options={"object_poses": GOAL_POSES})
    assert success


def test_script_reports_both_controllers_and_writes_a_video(tmp_path):
    video = tmp_path / "packing.mp4"
    proc = subprocess.run(
        [
            sys.executable,
            "scripts/scripted_packing.py",
            "--robot",
            "floating",
            "--episodes",
            "2",
            "--video",
            str(video),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["robot"] == "floating" and summary["episodes"] == 2
    assert summary["push_then_insert"]["success_rate"] >= 0.5
    assert summary["straight_descent"]["success_rate"] <= 0.5
    assert summary["video_episode_success"] is True
    assert video.stat().st_size > 1000


@pytest.mark.parametrize("policy_cls", [ScriptedPackingPolicy, StraightDescentPolicy])
def test_actions_are_float32_in_the_action_space(policy_cls):
    env = make()
    observation, _ = env.reset(seed=3)
    policy = policy_cls(env)
    for _ in range(20):
        action = policy(observation)
        assert action.dtype == np.float32 and env.action_space.contains(action)
        observation, *_ = env.step(action)
