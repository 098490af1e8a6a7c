"""Runs with different seeds share no env streams (agents/rollout.py: env_seeds)."""

import functools

import numpy as np

import envs
from agents.rollout import env_seeds, make_vector_env
from agents.training_envs import make_env


def first_starts(run_seed, num_envs=3, episodes=2):
    """Each env's start states of its first ``episodes`` episodes, for a run seeded ``run_seed``."""
    factory = functools.partial(make_env, envs.PEG_INSERTION_ID, 1)  # 1-step episodes: every step resets
    vec = make_vector_env(factory, {"robot": "floating"}, num_envs=num_envs, asynchronous=False)
    starts = []
    try:
        vec.reset(seed=env_seeds(run_seed, num_envs))
        for _ in range(episodes):
            starts.append([tuple(np.round(s["peg_pose"], 9)) for s in vec.unwrapped.call("get_start_state")])
            vec.step(np.zeros((num_envs, 6), np.float32))
    finally:
        vec.close()
    return [start for episode in starts for start in episode]


def test_env_seeds_are_distinct_within_and_across_runs():
    seeds = [s for run in range(4) for s in env_seeds(run, 4)]
    assert len(set(seeds)) == len(seeds)
    assert env_seeds(0, 4)[1:] != env_seeds(1, 4)[:3]  # gymnasium's seed + i would make these equal
    assert env_seeds(5, 3) == env_seeds(5, 3)  # and the derivation is deterministic


def test_runs_with_neighbouring_seeds_share_no_start_states():
    run0, run1 = first_starts(0), first_starts(1)
    assert len(set(run0)) == len(run0) and len(set(run1)) == len(run1)
    assert not set(run0) & set(run1)
    assert first_starts(0) == run0  # same seed: same starts
