"""Golden trajectories of peg insertion: the safety net for refactoring the environment.

Each case is a seeded reset with a fixed random action sequence, then two explicit starts: one
beside the opening (the peg lands on the hole's top face and is pushed: contact forces) and one
above it (the peg drops in: success and termination). Observations, rewards, flags, the numeric ``info``
entries (reward terms included) and the final start state are recorded.
``tests/test_golden_peg_insertion.py`` replays them and compares with the recording.

Record (only when a behaviour change is intended, and say so in the commit)::

    .venv/bin/python tests/golden_peg.py --record [--case NAME ...]

History: ``floating_box_randomized`` was re-recorded when the square peg's keypoints moved off
its axis (envs/keypoints.py); only its keypoint features, keypoint distance and reward changed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict

import gymnasium as gym
import numpy as np

import envs

GOLDEN_FILE = Path(__file__).parent / "data" / "golden_peg_insertion.npz"
RANDOM_STEPS = 25
DESCENT_STEPS = 20
CASES = {
    "panda_graph": {"robot": "panda", "obs_mode": "graph"},
    "panda_flat": {"robot": "panda", "obs_mode": "flat"},
    "floating_graph": {"robot": "floating", "obs_mode": "graph"},
    "floating_flat": {"robot": "floating", "obs_mode": "flat"},
    "floating_box_randomized": {
        "robot": "floating",
        "obs_mode": "flat",
        "peg_shape": "box",
        "num_keypoints": 4,
        "keypoint_spacing": 0.02,
        "randomization": {
            "friction_range": [0.3, 0.8],
            "clearance_range": [0.001, 0.003],
            "peg_size_scale_range": [0.9, 1.1],
            "observation_noise_std": 0.001,
        },
        "reward": {"action_penalty": 0.1, "contact_force_penalty": 0.01},
    },
}


def _flatten_obs(obs) -> Dict[str, np.ndarray]:
    if isinstance(obs, dict):
        return {f"obs.{k}": np.asarray(v) for k, v in obs.items()}
    return {"obs": np.asarray(obs)}


def _numeric_info(info: dict) -> Dict[str, float]:
    values = {f"info.{k}": float(v) for k, v in info.items() if isinstance(v, (bool, int, float, np.number))}
    values.update({f"info.reward_terms.{k}": float(v) for k, v in info.get("reward_terms", {}).items()})
    return values


def _record_step(columns: Dict[str, list], obs, reward: float, terminated: bool, info: dict) -> None:
    row = {**_flatten_obs(obs), "reward": reward, "terminated": float(terminated), **_numeric_info(info)}
    for key, value in row.items():
        columns.setdefault(key, []).append(value)


def run_case(kwargs: dict, seed: int = 7) -> Dict[str, np.ndarray]:
    """Replay one case; returns ``{column: stacked values}`` (rows: the steps of its three episodes)."""
    env = gym.make(envs.PEG_INSERTION_ID, **kwargs).unwrapped
    actions = np.random.default_rng(seed).uniform(-1.0, 1.0, (RANDOM_STEPS, 6)).astype(np.float32)
    columns: Dict[str, list] = {}
    obs, info = env.reset(seed=seed)
    _record_step(columns, obs, 0.0, False, info)
    for action in actions:
        obs, reward, terminated, _, info = env.step(action)
        _record_step(columns, obs, reward, terminated, info)
        if terminated:
            break
    state = env.get_start_state()
    # Beside the opening: the peg lands on the hole's top face and is pushed sideways (contact);
    # then straight above it: the peg drops in (success, termination).
    for peg_pose, lateral in (
        ([0.008, -0.006, 0.01, 0.05, 0.0, 0.05], [-0.7, 0.5, -0.3, -0.3, 0, 0]),
        ([0.0005, -0.0005, 0.01, 0.0, 0.0, 0.05], [0, 0, -1, 0, 0, 0]),
    ):
        obs, info = env.reset(options={"peg_pose": peg_pose})
        _record_step(columns, obs, 0.0, False, info)
        for step in range(DESCENT_STEPS):
            action = [0, 0, -1, 0, 0, 0] if step < 3 or step >= 6 else lateral
            obs, reward, terminated, _, info = env.step(np.array(action, np.float32))
            _record_step(columns, obs, reward, terminated, info)
            if terminated:
                break
    env.close()
    result = {key: np.asarray(values) for key, values in columns.items()}
    result["start_state_after_random"] = np.asarray([*state["peg_pose"], *state["hole_pose"]])
    return result


def record(cases=tuple(CASES), path: Path = GOLDEN_FILE) -> None:
    """Record ``cases`` (all by default); the other cases' recordings are kept as they are."""
    arrays = {}
    if path.exists():
        with np.load(path) as data:
            arrays = {key: data[key] for key in data.files if key.split("/")[0] not in cases}
    arrays.update({f"{case}/{key}": value for case in cases for key, value in run_case(CASES[case]).items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    print(f"wrote {', '.join(cases)} to {path}")


def load(case: str, path: Path = GOLDEN_FILE) -> Dict[str, np.ndarray]:
    with np.load(path) as data:
        prefix = f"{case}/"
        return {key[len(prefix) :]: data[key] for key in data.files if key.startswith(prefix)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="overwrite the golden file")
    parser.add_argument("--case", choices=sorted(CASES), action="append", help="record only these cases")
    args = parser.parse_args()
    if args.record:
        record(tuple(args.case or CASES))
    else:
        parser.print_help()
