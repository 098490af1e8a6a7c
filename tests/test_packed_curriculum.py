"""Near-goal starts for packed objects (envs.packed_objects.start_at_difficulty) and both curricula on it."""

import gymnasium as gym
import numpy as np
import pytest
from train_config import compose_train

import envs
from agents import checkpoint as ckpt
from agents.trainer import train
from envs.config import make_packed_objects_config
from envs.packed_objects import START_TOLERANCE, WITHDRAW_SHARE, goal_layout, start_at_difficulty

pytestmark = pytest.mark.usefixtures("single_thread")


def make_env(**kwargs):
    return gym.make(envs.PACKED_OBJECTS_ID, robot="floating", **kwargs)


def occluder_displacement(config, options):
    """Largest distance of a packed box from its goal (the occluders' displacement)."""
    goals = goal_layout(config).goal_xy[1:]
    return float(np.linalg.norm(np.asarray(options["object_poses"])[:, :2] - goals, axis=1).max())


def test_difficulty_zero_is_the_seated_goal():
    env = make_env()
    options = start_at_difficulty(env.unwrapped.config, 0.0, np.random.default_rng(0))
    assert options["held_pose"] == [0.0] * 6
    env.reset(seed=0, options=options)
    _, _, terminated, _, info = env.step(np.zeros(6, np.float32))
    env.close()
    assert info["is_success"] and terminated


def test_difficulty_one_is_the_full_start_distribution():
    cfg, rng = make_packed_objects_config(), np.random.default_rng(0)
    for _ in range(20):
        options = start_at_difficulty(cfg, 1.0, rng)
        held = np.array(options["held_pose"])
        assert np.all(held >= cfg.start_low) and np.all(held <= cfg.start_high)
        shift = occluder_displacement(cfg, options)
        assert (
            cfg.occluder_shift_range[0] - 1e-9
            <= shift
            <= np.hypot(*[cfg.occluder_shift_range[1], cfg.occluder_lateral_range]) + 1e-9
        )
    with pytest.raises(ValueError, match="difficulty must be in"):
        start_at_difficulty(cfg, -0.1, rng)


@pytest.mark.parametrize("kwargs", [{}, {"num_objects": 5, "grid_rows": 2, "num_displaced": 2}])
def test_every_difficulty_gives_starts_the_env_accepts_farther_with_difficulty(kwargs):
    env = make_env(**kwargs)
    cfg, rng = env.unwrapped.config, np.random.default_rng(1)
    held_height, displacement = [], []
    for difficulty in np.linspace(0.0, 1.0, 9):
        starts = [start_at_difficulty(cfg, float(difficulty), rng) for _ in range(4)]
        for options in starts:
            env.reset(seed=0, options=options)  # raises if the env rejects the start
        held_height.append(np.mean([s["held_pose"][2] for s in starts]))
        displacement.append(np.mean([occluder_displacement(cfg, s) for s in starts]))
    env.close()
    levels = np.linspace(0.0, 1.0, 9)
    withdrawing = levels <= WITHDRAW_SHARE
    assert np.all(np.diff(np.array(held_height)[withdrawing]) > 0)  # first the held box rises ...
    assert np.all(np.array(displacement)[withdrawing] == 0.0)  # ... with every box in place,
    assert np.all(np.diff(np.array(displacement)[~withdrawing]) > 0)  # then the occluders move in


def test_a_settled_goal_state_is_a_valid_start_again():
    """The reverse curriculum walks from states the env produced: they must be accepted back."""
    env = make_env(terminate_on_success=False)
    env.reset(seed=0, options=start_at_difficulty(env.unwrapped.config, 0.0, np.random.default_rng(0)))
    for _ in range(5):
        env.step(np.array([0.3, 0, 0.5, 0, 0, 0.2], np.float32))
    state = env.unwrapped.get_start_state()
    env.reset(seed=0, options=state)
    env.close()


def slot_intrusion(config, options):
    """Largest distance a neighbour of the slot has moved toward it (its occlusion of the slot)."""
    layout = goal_layout(config)
    poses = np.asarray(options["object_poses"])[:, :2]
    toward = layout.slot_xy - layout.goal_xy[1:]
    toward /= np.linalg.norm(toward, axis=1, keepdims=True)
    return max(float(np.dot(poses[i] - layout.goal_xy[1 + i], toward[i])) for i in layout.neighbours)


def test_perturbing_a_start_moves_the_boxes_only_into_free_space():
    env = make_env()
    config, rng = env.unwrapped.config, np.random.default_rng(0)
    lifted = start_at_difficulty(config, WITHDRAW_SHARE, rng)  # held box above its slot, boxes in place
    env.reset(seed=0, options=lifted)
    start, intrusions = lifted, []
    for _ in range(40):  # a walk of perturbations, each one a valid start
        start = env.unwrapped.perturb_start_state(start, rng, 0.1)
        env.reset(seed=0, options=start)
        intrusions.append(slot_intrusion(config, start))
    assert start["held_pose"] == lifted["held_pose"]  # the robot's object is the robot's to move
    assert occluder_displacement(config, start) > 0.005 and max(intrusions) > 0.005  # boxes drift into the slot
    seated = start_at_difficulty(config, 0.0, rng)
    env.reset(seed=0, options=seated)
    for _ in range(20):  # with the held box seated, a neighbour can close its gap but not enter the slot
        seated = env.unwrapped.perturb_start_state(seated, rng, 0.1)
    assert slot_intrusion(config, seated) < config.gap + START_TOLERANCE
    assert env.unwrapped.perturb_start_state(lifted, rng, 0.0) == lifted
    with pytest.raises(ValueError, match="perturbation scale must be a finite number >= 0, got -0.1"):
        env.unwrapped.perturb_start_state(lifted, rng, -0.1)
    env.close()


def test_reverse_walks_on_packed_objects_move_the_boxes_when_asked():
    """The robot's part of the walk made negligible: whatever moves the boxes is the object walk."""
    from curriculum.reverse import ReverseCurriculum

    displacement = {}
    for scale in (0.0, 0.3):
        overrides = ["curriculum=reverse", f"curriculum.object_walk_scale={scale}", "curriculum.walk_action_scale=1e-6"]
        cfg = compose_train([*PACKED, *overrides])
        curriculum = ReverseCurriculum(cfg.curriculum, cfg)
        try:
            config, start = curriculum.walker.unwrapped.config, curriculum.goal
            for _ in range(10):
                start = curriculum._walk(start) or start
            displacement[scale] = occluder_displacement(config, start)
        finally:
            curriculum.walker.close()
    assert displacement[0.3] > 0.005 and displacement[0.0] < 0.001


PACKED = [
    "env=packed_objects",
    "env.kwargs.robot=floating",
    "env.max_episode_steps=20",
    "num_envs=2",
    "rollout_steps=32",
    "agent.num_epochs=1",
    "async_envs=false",
    "progress_bar=false",
    "logger.wandb.mode=disabled",
    "total_steps=128",
]


@pytest.mark.parametrize("curriculum", ["adaptive", "reverse"])
def test_training_on_packed_objects_with_each_curriculum(tmp_path, monkeypatch, curriculum):
    monkeypatch.chdir(tmp_path)
    overrides = [*PACKED, f"curriculum={curriculum}", "curriculum.full_distribution_fraction=0.0"]
    if curriculum == "adaptive":
        overrides.append("curriculum.window=2")
    train(compose_train(overrides), tmp_path / "run")
    saved = ckpt.load_checkpoint(tmp_path / "run" / "checkpoints" / ckpt.LATEST)
    state = saved["trainer"]["plugins"]["curriculum"]
    assert state["next_id"] >= 2 * 2  # every env got a fresh curriculum start after every rollout
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    assert "curriculum/episodes" in header and "curriculum/rejected_starts" in header
