"""The adaptive near-goal curriculum: starts by difficulty, the schedule, training with it, resume."""

import gymnasium as gym
import numpy as np
import pytest
from omegaconf import OmegaConf
from train_config import compose_train

import envs
from agents import checkpoint as ckpt
from agents.config import validate_train_config
from agents.start_states import StartQueue, assignment_state
from agents.trainer import Trainer, train
from envs.config import make_peg_insertion_config
from envs.peg_insertion import start_at_difficulty

pytestmark = pytest.mark.usefixtures("single_thread")

PEG = [
    "curriculum=adaptive",
    "env.kwargs.robot=floating",
    "env.max_episode_steps=30",
    "num_envs=2",
    "rollout_steps=64",
    "agent.num_epochs=1",
    "async_envs=false",
    "progress_bar=false",
    "logger.wandb.mode=disabled",
    "checkpoint_every=2",
    "curriculum.window=4",
]


def config(*overrides):
    return compose_train(overrides)


# ------------------------------------------------------------------ starts by difficulty


def test_difficulty_zero_is_the_goal_and_one_the_full_distribution():
    cfg, rng = make_peg_insertion_config(), np.random.default_rng(0)
    assert start_at_difficulty(cfg, 0.0, rng)["peg_pose"] == [0.0, 0.0, -cfg.hole_depth, 0.0, 0.0, 0.0]
    for _ in range(20):
        pose = np.array(start_at_difficulty(cfg, 1.0, rng)["peg_pose"])
        assert np.all(pose >= cfg.start_low) and np.all(pose <= cfg.start_high)
    with pytest.raises(ValueError, match="difficulty must be in"):
        start_at_difficulty(cfg, 1.5, rng)


@pytest.mark.parametrize("kwargs", [{}, {"peg_shape": "box", "clearance": 0.0005}])
def test_every_difficulty_gives_starts_the_env_accepts_farther_with_difficulty(kwargs):
    env = gym.make(envs.PEG_INSERTION_ID, robot="floating", **kwargs)
    cfg, rng = env.unwrapped.config, np.random.default_rng(1)
    distances = []
    for difficulty in np.linspace(0.0, 1.0, 11):
        per_level = []
        for _ in range(5):
            _, info = env.reset(seed=0, options=start_at_difficulty(cfg, float(difficulty), rng))
            per_level.append(info["keypoint_distance"])
        distances.append(np.mean(per_level))
    env.close()
    assert distances[0] < 1e-3 and np.all(np.diff(distances) > 0)


# ------------------------------------------------------------------ schedule


def make_curriculum(**overrides):
    from curriculum.adaptive import AdaptiveCurriculum

    cfg = config(*PEG, *(f"curriculum.{k}={v}" for k, v in overrides.items()))
    return AdaptiveCurriculum(cfg.curriculum, cfg)


def feed(curriculum, successes):
    curriculum.window.extend(successes)
    curriculum._adapt()


def test_difficulty_moves_with_success_over_a_full_window_within_its_bounds():
    curriculum = make_curriculum(initial_difficulty=0.5, step=0.1, max_difficulty=0.6)
    feed(curriculum, [1.0, 1.0, 1.0])  # window of 4 not full yet
    assert curriculum.difficulty == 0.5
    feed(curriculum, [1.0])  # 100% > 0.75: harder, window restarts
    assert curriculum.difficulty == pytest.approx(0.6) and len(curriculum.window) == 0
    feed(curriculum, [1.0] * 4)
    assert curriculum.difficulty == pytest.approx(0.6)  # max_difficulty
    feed(curriculum, [0.0, 1.0, 0.0, 1.0])  # 50%: between lower and upper, stays
    assert curriculum.difficulty == pytest.approx(0.6) and len(curriculum.window) == 4
    feed(curriculum, [0.0] * 4)  # 25% < 0.5: easier
    assert curriculum.difficulty == pytest.approx(0.5)


def test_full_distribution_fraction_of_starts():
    curriculum = make_curriculum(full_distribution_fraction=0.3)
    starts = curriculum.new_starts(2000)
    assert np.mean([s is None for s in starts]) == pytest.approx(0.3, abs=0.04)
    ids = [s[0] for s in starts if s is not None]
    assert ids == sorted(set(ids))  # every curriculum start has its own id


def test_each_env_gets_a_queue_of_distinct_starts_per_rollout():
    curriculum = make_curriculum(full_distribution_fraction=0.0, starts_per_rollout=5)
    queues = curriculum.start_queues(3)
    assert [type(q) for q in queues] == [StartQueue] * 3 and [len(q.starts) for q in queues] == [5, 5, 5]
    ids = [start[0] for q in queues for start in q.starts]
    assert ids == list(range(15))  # one fresh start per queued episode, none shared between envs
    single = make_curriculum(full_distribution_fraction=0.0, starts_per_rollout=1).start_queues(2)
    assert [len(q.starts) for q in single] == [1, 1]  # the former behaviour: one start per env and rollout


@pytest.mark.parametrize(
    "overrides, message",
    [
        ([*PEG, "curriculum.upper=0.4"], "need 0 <= lower <= upper <= 1"),
        ([*PEG, "curriculum.initial_difficulty=2"], "initial_difficulty"),
        ([*PEG, "curriculum.window=0"], "window must be >= 1"),
        ([*PEG, "curriculum.starts_per_rollout=0"], "starts_per_rollout must be >= 1"),
        (["curriculum=reverse", "curriculum.object_walk_scale=-1"], "object_walk_scale must be a finite number >= 0"),
        (["curriculum=adaptive", "env=gym", "env.id=Pendulum-v1", "model=mlp"], "env=gym does not define"),
    ],
)
def test_bad_curriculum_configs_name_the_problem(overrides, message):
    with pytest.raises(ValueError, match=message):
        validate_train_config(config(*overrides))


# ------------------------------------------------------------------ training


def test_training_with_the_curriculum_logs_and_raises_difficulty(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train(config(*PEG, "total_steps=768"), tmp_path / "run")
    with open(tmp_path / "run" / "metrics.csv") as f:
        rows = [
            dict(zip(header, line.strip().split(","))) for header in [f.readline().strip().split(",")] for line in f
        ]
    difficulties = [float(r["curriculum/difficulty"]) for r in rows]
    assert difficulties[0] > 0.0  # near-goal starts succeed at once: the first window moves it
    assert all(b >= a for a, b in zip(difficulties, difficulties[1:]))
    assert float(rows[0]["curriculum/episodes"]) > 0 and "curriculum/rejected_starts" in rows[0]
    assert (tmp_path / "run" / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"  # drawn at each checkpoint


def test_resume_restores_the_curriculum_and_each_workers_start(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    train(config(*PEG, "total_steps=512"), run_dir)
    saved = ckpt.load_checkpoint(run_dir / "checkpoints" / ckpt.LATEST)
    state = saved["trainer"]["plugins"]["curriculum"]

    trainer = Trainer(config(*PEG, "total_steps=1024"), run_dir, checkpoint=saved)
    trainer.build()
    try:
        curriculum, schedule = trainer.plugins[0], state["schedule"]
        assert curriculum.difficulty == schedule["difficulty"] and list(curriculum.window) == schedule["window"]
        assert curriculum.rng.bit_generator.state == state["rng"]
        workers = trainer.envs.unwrapped
        assert list(workers.get_attr("current_start")) == state["starts"]["current"]  # in-flight episodes replayed
        assert [assignment_state(a) for a in workers.get_attr("assigned_start")] == state["starts"]["next"]
        assert OmegaConf.select(trainer.cfg, "curriculum.name") == "adaptive"
    finally:
        trainer.envs.close()
        trainer.logger.close()


# ------------------------------------------------------------------ reverse curriculum

REVERSE = [o if o != "curriculum=adaptive" else "curriculum=reverse" for o in PEG if not o.startswith("curriculum.")]


def make_reverse(**overrides):
    from curriculum.reverse import ReverseCurriculum

    cfg = config(*REVERSE, *(f"curriculum.{k}={v}" for k, v in overrides.items()))
    return ReverseCurriculum(cfg.curriculum, cfg)


def test_random_walks_from_the_goal_give_valid_starts_away_from_it():
    curriculum = make_reverse(full_distribution_fraction=0.0, replay_fraction=0.0)
    try:
        starts = curriculum.new_starts(6)
        goal = np.array(curriculum.goal["peg_pose"])
        env = gym.make(envs.PEG_INSERTION_ID, robot="floating")
        for _, options in starts:
            env.reset(seed=0, options=options)  # a valid start: the env accepts it
            assert np.abs(np.array(options["peg_pose"]) - goal).max() > 1e-4
        env.close()
        assert [s[0] for s in starts] == list(range(6)) and len(curriculum.starts) == 6
    finally:
        curriculum.walker.close()


def test_parents_are_good_starts_then_mastered_ones_and_stats_count_episodes():
    curriculum = make_reverse(min_visits=2, r_min=0.1, r_max=0.9)
    try:
        curriculum.starts = {
            0: {"options": {}, "visits": 4, "successes": 4},  # mastered
            1: {"options": {}, "visits": 1, "successes": 0},
        }  # too few visits
        assert curriculum.good_starts() == [] and curriculum._mastered_starts() == [0]
        curriculum.observe(
            [{"start_id": 1, "success": True}, {"start_id": 1, "success": False}, {"start_id": 99, "success": True}]
        )  # 99: unknown (forgotten), ignored
        assert curriculum.starts[1] == {"options": {}, "visits": 3, "successes": 1}
        assert curriculum.good_starts() == [1]
    finally:
        curriculum.walker.close()


def test_while_no_start_is_good_walks_leave_from_the_deepest_mastered_starts():
    curriculum = make_reverse(min_visits=2, r_min=0.1, r_max=0.9)
    try:
        goal = curriculum.goal
        curriculum.starts = {
            0: {"options": goal, "depth": 1, "visits": 4, "successes": 4},  # mastered, shallow
            1: {"options": goal, "depth": 3, "visits": 4, "successes": 4},  # mastered, deepest
            2: {"options": goal, "depth": 5, "visits": 1, "successes": 1},  # deeper, not yet measured
        }
        assert curriculum._deepest_mastered_starts() == [1]
        start_id, _ = curriculum._grow()
        assert curriculum.starts[start_id]["depth"] == 4  # one walk beyond its parent
        assert curriculum.curriculum_metrics()["curriculum/max_depth"] == 5.0
    finally:
        curriculum.walker.close()


def test_the_peg_task_has_no_unactuated_objects_to_perturb():
    env = gym.make(envs.PEG_INSERTION_ID, robot="floating")
    env.reset(seed=0)
    start = env.unwrapped.get_start_state()
    assert env.unwrapped.perturb_start_state(start, np.random.default_rng(0), 1.0) == start
    env.close()


def test_training_with_the_reverse_curriculum_resumes_its_start_buffer(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    train(config(*REVERSE, "total_steps=512"), run_dir)
    saved = ckpt.load_checkpoint(run_dir / "checkpoints" / ckpt.LATEST)
    schedule = saved["trainer"]["plugins"]["curriculum"]["schedule"]
    assert len(schedule["starts"]) >= 2 and sum(s["visits"] for s in schedule["starts"].values()) > 0
    trainer = Trainer(config(*REVERSE, "total_steps=1024"), run_dir, checkpoint=saved)
    trainer.build()
    try:
        assert trainer.plugins[0].starts == {int(k): v for k, v in schedule["starts"].items()}
    finally:
        trainer.plugins[0].walker.close()
        trainer.envs.close()
        trainer.logger.close()


def test_a_settled_inserted_state_is_a_valid_start_again():
    """get_start_state() -> reset() must accept the env's own states, contact penetration included."""
    env = gym.make(envs.PEG_INSERTION_ID, robot="floating", terminate_on_success=False)
    env.reset(seed=0, options={"peg_pose": [0.0, 0.0, 0.005, 0.0, 0.0, 0.0]})
    for _ in range(12):  # press down into the hole floor
        env.step(np.array([0, 0, -1, 0, 0, 0], np.float32))
    state = env.unwrapped.get_start_state()
    assert state["peg_pose"][2] < -env.unwrapped.config.hole_depth  # the floor gives a little
    env.reset(seed=0, options=state)
    env.close()
