"""Assigned start states (agents/start_states.py) reach every reset of vector env workers, automatic ones too."""

import functools

import numpy as np
import pytest

import envs
from agents.rollout import episode_stats_from_info, make_vector_env
from agents.start_states import StartQueue, assignment_from_state, assignment_state
from agents.training_envs import make_env

EPISODE_STEPS = 3
START_A = [0.01, -0.02, 0.04, 0.05, 0.0, 0.1]
START_B = [-0.015, 0.01, 0.05, 0.0, -0.05, -0.2]


def vector_env(asynchronous=False):
    factory = functools.partial(make_env, envs.PEG_INSERTION_ID, EPISODE_STEPS)
    return make_vector_env(
        factory,
        {"robot": "floating"},
        num_envs=2,
        asynchronous=asynchronous,
        info_keys=["is_success", "start_id", "start_rejected"],
    )


def peg_poses(vec):
    return [np.asarray(s["peg_pose"]) for s in vec.unwrapped.call("get_start_state")]


def run_to_autoreset(vec):
    """Step both envs to the end of their episodes; return the episode records of the last step."""
    for _ in range(EPISODE_STEPS):
        _, _, _, _, info = vec.step(np.zeros((2, 6), np.float32))
    return info, episode_stats_from_info(info)["episodes"]


@pytest.mark.parametrize("asynchronous", [False, True])
def test_assigned_start_applies_at_every_reset_and_tags_episodes(asynchronous):
    vec = vector_env(asynchronous)
    try:
        vec.unwrapped.set_attr("assigned_start", [(7, {"peg_pose": START_A}), None])
        _, info = vec.reset(seed=0)
        assert info["start_id"].tolist() == [7, -1]
        first = peg_poses(vec)
        np.testing.assert_allclose(first[0], START_A, atol=1e-6)
        assert np.abs(first[1] - START_A).max() > 1e-3  # the other env drew from its own distribution

        vec.unwrapped.set_attr("assigned_start", [(7, {"peg_pose": START_A}), (8, {"peg_pose": START_B})])
        info, episodes = run_to_autoreset(vec)  # the automatic resets take the assigned starts
        assert [(e["env"], e["start_id"], e["length"]) for e in episodes] == [(0, 7, 3), (1, -1, 3)]
        assert info["start_id"].tolist() == [7, 8]
        after = peg_poses(vec)
        np.testing.assert_allclose(after[0], START_A, atol=1e-6)
        np.testing.assert_allclose(after[1], START_B, atol=1e-6)
    finally:
        vec.close()


@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_start_queue_gives_each_episode_the_next_start_in_turn(asynchronous):
    vec = vector_env(asynchronous)
    try:
        queue = StartQueue([(1, {"peg_pose": START_A}), (2, {"peg_pose": START_B}), None])
        vec.unwrapped.set_attr("assigned_start", [queue, None])
        _, info = vec.reset(seed=0)
        ids, poses = [info["start_id"][0]], [peg_poses(vec)[0]]
        for _ in range(4):  # each automatic reset (in the worker process when asynchronous) takes the next
            info, _ = run_to_autoreset(vec)
            ids.append(info["start_id"][0])
            poses.append(peg_poses(vec)[0])
        assert ids == [1, 2, -1, 1, 2]  # in turn, then over again
        for pose, expected in zip(poses, [START_A, START_B, None, START_A, START_B]):
            if expected is not None:
                np.testing.assert_allclose(pose, expected, atol=1e-6)
        assert vec.unwrapped.get_attr("assigned_start")[0].position == 5
    finally:
        vec.close()


def test_a_queue_survives_a_checkpoint_with_its_position(tmp_path):
    import torch

    queue = StartQueue([(4, {"peg_pose": START_A}), None, (5, {"peg_pose": START_B})], position=2)
    torch.save({"next": [assignment_state(queue), None, (6, {"peg_pose": START_A})]}, tmp_path / "s.pt")
    saved = torch.load(tmp_path / "s.pt", weights_only=True)["next"]  # as checkpoints load
    restored = [assignment_from_state(s) for s in saved]
    assert restored[0] == queue and restored[1] is None and restored[2] == (6, {"peg_pose": START_A})
    assert restored[0].take() == (5, {"peg_pose": START_B})
    with pytest.raises(ValueError, match="at least one entry"):
        StartQueue([])


def test_rejected_start_is_reported_and_counted_not_silently_replaced():
    vec = vector_env()
    try:
        below_floor = [0.0, 0.0, -0.5, 0.0, 0.0, 0.0]
        vec.unwrapped.set_attr("assigned_start", [(3, {"peg_pose": below_floor}), None])
        _, info = vec.reset(seed=0)
        assert info["start_id"].tolist() == [-1, -1]
        assert info["_start_rejected"].tolist() == [True, False]
        assert "start 3: peg_pose z=-0.5000 is below the hole floor" in info["start_rejected"][0]
        assert vec.unwrapped.get_attr("rejected_starts") == (1, 0)
    finally:
        vec.close()


def test_reset_options_while_a_start_is_assigned_raise():
    env = make_env(envs.PEG_INSERTION_ID, EPISODE_STEPS, robot="floating")
    env.set_wrapper_attr("assigned_start", (1, {"peg_pose": START_A}))
    with pytest.raises(ValueError, match="given while start 1 is assigned"):
        env.reset(seed=0, options={"peg_pose": START_B})
    env.close()
