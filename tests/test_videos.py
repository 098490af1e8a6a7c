"""Rollout videos of scripts/evaluate.py: size, real-time frame timing, held last frame, overlay, unchanged physics."""

import importlib.util
import math
from pathlib import Path

import gymnasium as gym
import imageio.v2 as imageio
import numpy as np
import pytest
from omegaconf import OmegaConf
from train_config import PENDULUM, compose_train

import envs

ROOT = Path(__file__).resolve().parents[1]
FPS = 25
HOLD_SECONDS = 0.2
WIDTH, HEIGHT = 640, 480
STEPS = 8  # a whole number of frames for both robots at 25 fps (floating: 16 physics steps per frame)
ENVS = [
    (env_id, robot) for env_id in (envs.PEG_INSERTION_ID, envs.PACKED_OBJECTS_ID) for robot in ("floating", "panda")
]
BESIDE_THE_OPENING = {"peg_pose": [0.008, -0.006, 0.01, 0.05, 0.0, 0.05]}  # lands on the hole's top face
DOWN = [0.0, 0.0, -1.0, 0.0, 0.0, 0.0]


def load_evaluate_script():
    spec = importlib.util.spec_from_file_location("evaluate_script", ROOT / "scripts" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


evaluate_script = load_evaluate_script()


def make_env(env_id, robot, steps=STEPS, render=True):
    render_kwargs = {"render_mode": "rgb_array", "sim": {"image_width": WIDTH, "image_height": HEIGHT}}
    return gym.make(env_id, max_episode_steps=steps, robot=robot, obs_mode="flat", **(render_kwargs if render else {}))


def recorder(env, directory, overlay=True, episodes=1, video_format="mp4", fps=FPS):
    return evaluate_script.VideoRecorder(env, directory, episodes, video_format, fps, HOLD_SECONDS, overlay)


def play(env, seed=0, actions=None, options=None):
    """One episode with the given actions (zeros after them); its observations and step infos."""
    observation, _ = env.reset(seed=seed, options=options)
    observations, infos, done, step = [observation], [], False, 0
    while not done:
        action = actions[step] if actions is not None and step < len(actions) else np.zeros(6)
        observation, _, terminated, truncated, info = env.step(action)
        observations.append(observation)
        infos.append(info)
        done, step = terminated or truncated, step + 1
    return observations, infos


def expected_frames(env, steps, fps):
    """The reset frame, one per 1/fps s of simulated time (real time), then the held last frame."""
    sim = env.unwrapped.sim
    simulated_seconds = steps * sim.substeps * sim.time_step
    return 1 + math.floor(simulated_seconds * fps + 1e-9) + round(HOLD_SECONDS * fps)


@pytest.mark.parametrize("env_id, robot", ENVS)
def test_video_is_large_and_plays_in_real_time_with_the_last_frame_held(tmp_path, env_id, robot):
    env = recorder(make_env(env_id, robot), tmp_path)
    play(env)
    assert env.fps == FPS  # both robots' physics rates are multiples of 25 frames per second
    frames = env.frames
    assert len(frames) == expected_frames(env, STEPS, FPS)
    assert all(frame.shape == (HEIGHT, WIDTH, 3) for frame in frames)
    hold = round(HOLD_SECONDS * FPS)
    assert all(np.array_equal(frame, frames[-1]) for frame in frames[-hold:])
    assert not np.array_equal(frames[-hold - 1], frames[-1])  # the overlay's step count moved on

    (path,) = env.files
    reader = imageio.get_reader(path)
    assert reader.get_meta_data()["fps"] == FPS
    assert sum(1 for _ in reader) == len(frames)
    env.close()


def test_frames_follow_simulated_time_across_action_boundaries(tmp_path):
    """5 floating-robot steps are 50 physics steps: frames at 16, 32 and 48, none at the end of each step."""
    steps = 5
    env = recorder(make_env(envs.PEG_INSERTION_ID, "floating", steps=steps), tmp_path)
    play(env)
    assert len(env.frames) == expected_frames(env, steps, FPS) == 1 + 3 + round(HOLD_SECONDS * FPS)
    env.close()


@pytest.mark.parametrize("robot", ["floating", "panda"])
def test_rendering_between_actions_leaves_the_trajectory_unchanged(tmp_path, robot):
    """Random actions, then a start beside the opening pushed down onto the hole (contact)."""
    episodes = [
        {"actions": np.random.default_rng(0).uniform(-1, 1, (STEPS, 6))},
        {"actions": [DOWN] * STEPS, "options": BESIDE_THE_OPENING},
    ]
    recorded = recorder(make_env(envs.PEG_INSERTION_ID, robot), tmp_path, episodes=len(episodes))
    plain = make_env(envs.PEG_INSERTION_ID, robot, render=False)
    for episode in episodes:
        with_video, infos = play(recorded, seed=3, **episode)
        without, _ = play(plain, seed=3, **episode)
        assert len(recorded.frames) > STEPS  # it did render within the steps
        assert len(with_video) == len(without)
        for a, b in zip(with_video, without):
            np.testing.assert_array_equal(a, b)
    assert any(info["contact_force"] > 0 for info in infos)
    recorded.close()
    plain.close()


def test_overlay_writes_on_the_frames_and_only_in_a_corner(tmp_path):
    with_text = recorder(make_env(envs.PEG_INSERTION_ID, "floating"), tmp_path / "on")
    without = recorder(make_env(envs.PEG_INSERTION_ID, "floating"), tmp_path / "off", overlay=False)
    with_text.reset(seed=1)
    without.reset(seed=1)
    a, b = with_text.frames[0], without.frames[0]
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a[HEIGHT // 2 :], b[HEIGHT // 2 :])
    with_text.close()
    without.close()


def test_episodes_past_video_episodes_are_not_rendered(tmp_path):
    env = recorder(make_env(envs.PEG_INSERTION_ID, "floating", steps=2), tmp_path, episodes=1, video_format="gif")
    play(env)
    play(env)
    assert env.frames == [] and len(env.files) == 1 and env.files[0].endswith(".gif")
    env.close()


def test_video_fps_above_the_physics_rate_is_a_clear_error(tmp_path):
    env = make_env(envs.PEG_INSERTION_ID, "floating")
    with pytest.raises(ValueError, match=r"^video_fps=1000: fps must be in \(0, 400\]"):
        recorder(env, tmp_path, fps=1000)
    env.close()


@pytest.mark.parametrize(
    "override, message",
    [
        ("video_width=0", "video_width must be an even integer in [1, 4096] for mp4, got 0"),
        ("video_width=641", "video_width must be an even integer in [1, 4096] for mp4, got 641"),
        ("video_height=5000", "video_height must be an even integer in [1, 4096] for mp4, got 5000"),
        ("video_fps=0", "video_fps must be >= 1, got 0"),
        ("video_hold_seconds=-1", "video_hold_seconds must be a finite number >= 0, got -1.0"),
    ],
)
def test_bad_video_options_are_one_line_errors_naming_the_key(override, message):
    with pytest.raises(SystemExit) as exit_info:
        evaluate_script.main(["checkpoint=unused", override])
    assert exit_info.value.code == f"Error: ValueError: {message}"


def test_odd_sizes_are_fine_for_gifs():
    cfg, _ = evaluate_script.parse_arguments(["checkpoint=unused", "video_format=gif", "video_width=641"])
    assert cfg.video_width == 641


def test_video_size_applies_to_insertion_envs_only():
    video = OmegaConf.create({"video": True, "video_width": 800, "video_height": 600})
    peg = compose_train(["env=peg_insertion"])
    evaluate_script.set_video_size(peg, video)
    assert (peg.env.kwargs.sim.image_width, peg.env.kwargs.sim.image_height) == (800, 600)
    pendulum = compose_train(PENDULUM)
    evaluate_script.set_video_size(pendulum, video)
    assert "sim" not in pendulum.env.kwargs


class PlainEnv(gym.Env):
    """An env without ``set_frame_callback`` (like ``env=gym`` runs): rendered once per step."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,))
    action_space = gym.spaces.Box(-1.0, 1.0, (6,))
    render_mode = "rgb_array"

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(1, np.float32), 0.0, self.t == STEPS, False, {}

    def render(self):
        return np.full((HEIGHT, WIDTH, 3), self.t, np.uint8)


def test_envs_without_frame_callbacks_get_one_frame_per_step(tmp_path):
    env = recorder(PlainEnv(), tmp_path)
    play(env)
    assert len(env.frames) == 1 + STEPS + round(HOLD_SECONDS * FPS)
