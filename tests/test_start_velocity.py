"""Start states carry velocities: a state taken mid-motion restarts as it was observed.

The observation has every object's linear and angular velocity (``envs/graph_obs.py``), so a start
state without them (a demonstration's state restored at rest) is seen by a policy as a different
state from the one recorded: the demonstration curriculum's near-goal starts looked like the first
state of an episode to the cloned policy.
"""

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs.graph_obs import NodeLayout
from envs.scripted_packing import ScriptedPackingPolicy

ROBOTS = ["floating", "panda"]


def moving_state(env_id: str, robot: str):
    """(observation, start state) after a few steps of motion: the peg driven by fixed actions, the packed
    boxes by the scripted controller's push."""
    env = gym.make(env_id, robot=robot)
    obs, _ = env.reset(seed=3)
    if env_id == envs.PEG_INSERTION_ID:
        steps, policy = 3, lambda obs: [0.6, -0.4, -1.0, 0.3, -0.2, 0.5]
    else:
        steps, policy = 14, ScriptedPackingPolicy(env)
    for _ in range(steps):
        obs, *_ = env.step(np.asarray(policy(obs), np.float32))
    state = env.unwrapped.get_start_state()
    env.close()
    return obs, state


def velocities(obs: np.ndarray, num_keypoints: int) -> np.ndarray:
    layout = NodeLayout(num_keypoints)
    return np.concatenate([obs[:, layout.slice("linvel")], obs[:, layout.slice("angvel")]], axis=1)


@pytest.mark.parametrize("robot", ROBOTS)
@pytest.mark.parametrize("env_id", [envs.PEG_INSERTION_ID, envs.PACKED_OBJECTS_ID])
def test_a_start_state_taken_mid_motion_is_observed_as_it_was(env_id, robot):
    recorded, state = moving_state(env_id, robot)
    assert np.abs(state["held_velocity"]).max() > 0.01, "the held object should be moving"
    env = gym.make(env_id, robot=robot)
    restored, _ = env.reset(seed=11, options=state)
    num_keypoints = env.unwrapped.config.num_keypoints
    nodes = restored["nodes"]
    expected = velocities(recorded["nodes"], num_keypoints)
    np.testing.assert_allclose(velocities(nodes, num_keypoints), expected, atol=1e-4)
    np.testing.assert_allclose(nodes, recorded["nodes"], atol=2e-4)
    # Without the velocities the same poses start at rest: the observation differs.
    poses_only = {k: v for k, v in state.items() if not k.endswith("velocities") and k != "held_velocity"}
    at_rest, _ = env.reset(seed=11, options=poses_only)
    assert np.abs(velocities(at_rest["nodes"], num_keypoints)).max() < 1e-6
    env.close()


def test_packed_boxes_keep_their_velocities():
    _, state = moving_state(envs.PACKED_OBJECTS_ID, "floating")
    assert np.abs(state["object_velocities"]).max() > 0.001, "the push should move a box"
    env = gym.make(envs.PACKED_OBJECTS_ID, robot="floating")
    env.reset(seed=5, options=state)
    restored = env.unwrapped.get_start_state()["object_velocities"]
    np.testing.assert_allclose(restored, state["object_velocities"], atol=1e-6)
    env.close()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"held_velocity": [0.0] * 5}, "reset option 'held_velocity' must be 6 finite numbers"),
        ({"held_velocity": [0, 0, float("nan"), 0, 0, 0]}, "reset option 'held_velocity' must be 6 finite numbers"),
        ({"object_velocities": [[0.0] * 6] * 3}, "reset option 'object_velocities' must be 4 rows"),
    ],
)
def test_malformed_velocities_are_rejected_by_name(options, message):
    env = gym.make(envs.PACKED_OBJECTS_ID, robot="floating")
    with pytest.raises(ValueError, match=message):
        env.reset(seed=0, options=options)
    env.close()


def test_the_peg_task_names_held_velocity_among_its_options():
    env = gym.make(envs.PEG_INSERTION_ID, robot="floating")
    with pytest.raises(ValueError, match="'held_velocity'"):
        env.reset(seed=0, options={"held_velocty": [0.0] * 6})
    env.close()
