"""The demonstration curriculum (curriculum/demo.py): scripted demonstrations, starts along them, training."""

import gymnasium as gym
import numpy as np
import pytest
from test_packed_curriculum import PACKED as PACKED_SMOKE
from train_config import compose_train

import envs
from agents import checkpoint as ckpt
from agents.config import validate_train_config
from agents.trainer import train
from curriculum.base import start_sampler
from curriculum.demo import DemoCurriculum

pytestmark = pytest.mark.usefixtures("single_thread")

# The packed-objects smoke settings, with full-length episodes: the scripted demonstrations need them.
PACKED = [
    *(o for o in PACKED_SMOKE if not o.startswith(("env.max_episode_steps=", "total_steps="))),
    "curriculum=demo",
    "curriculum.demonstrations=2",
]


def make_demo_curriculum(*overrides):
    cfg = compose_train([*PACKED, *overrides])
    return DemoCurriculum(cfg.curriculum, cfg)


@pytest.fixture(scope="module")
def curriculum():
    return make_demo_curriculum("curriculum.step=0.1")


def play_from(options, steps=1):
    """Reset a fresh env to ``options`` and hold still for ``steps``: the last info."""
    env = gym.make(envs.PACKED_OBJECTS_ID, robot="floating")
    try:
        env.reset(seed=0, options=options)
        for _ in range(steps):
            _, _, _, _, info = env.step(np.zeros(6, np.float32))
        return info
    finally:
        env.close()


def test_demonstrations_run_from_an_occluded_task_start_to_the_solved_state(curriculum):
    assert len(curriculum.demonstrations) == 2 and curriculum.failed_demonstrations == 0
    for states in curriculum.demonstrations:
        assert len(states) > 10
        assert play_from(states[-1])["is_success"]  # the last state is solved ...
        first = play_from(states[0])
        assert not first["is_success"] and first["fraction_in_place"] < 1.0  # ... the first one is occluded


def test_every_state_of_a_demonstration_is_a_start_the_env_accepts(curriculum):
    env = gym.make(envs.PACKED_OBJECTS_ID, robot="floating")
    try:
        for states in curriculum.demonstrations:
            for options in states:
                env.reset(seed=0, options=options)
                applied = env.unwrapped.get_start_state()["object_poses"]
                np.testing.assert_allclose(applied, options["object_poses"], atol=1e-6)
    finally:
        env.close()


def test_difficulty_walks_the_start_back_along_a_demonstration(curriculum):
    rng = np.random.default_rng(0)
    lengths = {len(states) for states in curriculum.demonstrations}
    for _ in range(10):
        start = curriculum.start_along_a_demonstration(0.0, rng)
        assert any(start == states[-1] for states in curriculum.demonstrations)
    step = curriculum.cfg.step
    for difficulty in (0.5, 1.0):
        for _ in range(20):
            start = curriculum.start_along_a_demonstration(difficulty, rng)
            index, length = next((s.index(start), len(s)) for s in curriculum.demonstrations if start in s)
            assert length in lengths
            assert (1 - difficulty) * (length - 1) - 0.5 <= index <= (1 - difficulty + step) * (length - 1) + 0.5
    starts = [curriculum.start_along_a_demonstration(1.0, rng) for _ in range(20)]
    assert any(s == d[0] for s in starts for d in curriculum.demonstrations)  # d = 1: the task's own starts


def test_task_starts_at_full_difficulty_replace_the_demonstrations_first_states():
    curriculum = make_demo_curriculum("curriculum.step=0.1", "curriculum.task_starts_at_full_difficulty=true")
    task_start = start_sampler(curriculum.train_cfg.env)
    demonstration_states = [s for states in curriculum.demonstrations for s in states]
    for seed in range(5):
        start = curriculum.sample_start(1.0, np.random.default_rng(seed))
        assert start == task_start(1.0, np.random.default_rng(seed))  # the task's own distribution ...
        assert start not in demonstration_states
        below = curriculum.sample_start(0.9, np.random.default_rng(seed))
        assert below in demonstration_states  # ... only at the last level
    off = make_demo_curriculum("curriculum.step=0.1")  # off (the default): states along the demonstrations
    assert all(off.sample_start(1.0, np.random.default_rng(s)) in demonstration_states for s in range(5))


def test_demonstrations_come_from_the_run_seed_alone():
    again = make_demo_curriculum()  # the same seed: the same demonstrations, as a resumed run records them
    other = make_demo_curriculum("seed=1")
    first = make_demo_curriculum()
    assert again.demonstrations == first.demonstrations
    assert other.demonstrations[0][0] != first.demonstrations[0][0]


def test_no_successful_demonstration_is_a_clear_error():
    with pytest.raises(ValueError, match="none of the 2 scripted demonstrations"):
        make_demo_curriculum("env.max_episode_steps=3")  # too short for the scripted controller


def test_bad_demo_config_names_the_problem():
    with pytest.raises(ValueError, match="demonstrations must be >= 1"):
        validate_train_config(compose_train([*PACKED, "curriculum.demonstrations=0"]))
    no_last_level = ["curriculum.task_starts_at_full_difficulty=true", "curriculum.max_difficulty=0.9"]
    with pytest.raises(ValueError, match="task_starts_at_full_difficulty needs max_difficulty=1.0, got 0.9"):
        validate_train_config(compose_train([*PACKED, *no_last_level]))
    without_demonstrator = ["curriculum=demo", "env=gym", "env.id=Pendulum-v1", "model=mlp"]
    with pytest.raises(ValueError, match="curriculum=demo needs a scripted demonstrator, which env=gym"):
        validate_train_config(compose_train(without_demonstrator))


@pytest.mark.parametrize("env", ["packed_objects", "peg_insertion"])
def test_training_with_the_demo_curriculum_starts_episodes_along_the_demonstrations(tmp_path, monkeypatch, env):
    monkeypatch.chdir(tmp_path)
    overrides = [
        *(o for o in PACKED if o != "env=packed_objects"),
        f"env={env}",
        "total_steps=128",
        "curriculum.window=2",
        "curriculum.full_distribution_fraction=0.0",
    ]
    train(compose_train(overrides), tmp_path / "run")
    saved = ckpt.load_checkpoint(tmp_path / "run" / "checkpoints" / ckpt.LATEST)
    state = saved["trainer"]["plugins"]["curriculum"]
    demonstrations = DemoCurriculum(compose_train(overrides).curriculum, compose_train(overrides)).demonstrations
    running = [options for _, options in state["starts"]["current"]]
    assert running and all(any(options in states for states in demonstrations) for options in running)
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    assert "curriculum/demonstrations" in header and "curriculum/difficulty" in header
