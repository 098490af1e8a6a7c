"""Peg-insertion environment: API conformance, determinism, state, rewards, bad input."""

import math
import warnings

import gymnasium as gym
import numpy as np
import pybullet
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env

import envs
from envs.rewards import multiscale_kernel
from envs.scripted import ScriptedInsertionPolicy, run_episode

ROBOTS = ["floating", "panda"]
OBS_MODES = ["graph", "flat"]


def make(**kwargs):
    return gym.make(envs.PEG_INSERTION_ID, **kwargs)


def assert_obs_equal(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    else:
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("env_id", envs.REGISTERED_IDS)
@pytest.mark.parametrize("robot", ROBOTS)
@pytest.mark.parametrize("obs_mode", OBS_MODES)
def test_gymnasium_env_checker(env_id, robot, obs_mode):
    env = gym.make(env_id, robot=robot, obs_mode=obs_mode)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any checker warning fails the test
        gym_check_env(env.unwrapped, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("robot", ROBOTS)
def test_stable_baselines3_env_checker_flat(robot):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = make(robot=robot, obs_mode="flat")
    sb3_check_env(env.unwrapped, warn=True)
    env.close()


def test_registration_has_time_limit():
    env = make(robot="floating")
    assert env.spec.max_episode_steps == envs.PEG_INSERTION_MAX_STEPS
    env.reset(seed=0)
    terminated = truncated = False
    steps = 0
    while not (terminated or truncated):
        _, _, terminated, truncated, _ = env.step(np.zeros(6, np.float32))
        steps += 1
    assert truncated and not terminated, "holding still above the hole must end only by the time limit"
    assert steps == envs.PEG_INSERTION_MAX_STEPS


@pytest.mark.parametrize("robot", ROBOTS)
@pytest.mark.parametrize("obs_mode", OBS_MODES)
def test_same_seed_and_actions_give_identical_rollouts(robot, obs_mode):
    actions = np.random.default_rng(0).uniform(-1, 1, (40, 6)).astype(np.float32)
    rollouts = []
    for _ in range(2):
        env = make(robot=robot, obs_mode=obs_mode)
        observation, _ = env.reset(seed=123)
        record = [observation]
        for action in actions:
            observation, reward, terminated, truncated, _ = env.step(action)
            record.append((observation, reward))
            if terminated or truncated:
                break
        rollouts.append(record)
        env.close()
    assert_obs_equal(rollouts[0][0], rollouts[1][0])
    for (obs_a, reward_a), (obs_b, reward_b) in zip(rollouts[0][1:], rollouts[1][1:]):
        assert_obs_equal(obs_a, obs_b)
        assert reward_a == reward_b


@pytest.mark.parametrize("robot", ROBOTS)
def test_save_step_restore_step_reproduces(robot):
    env = make(robot=robot, obs_mode="flat").unwrapped
    env.reset(seed=5)
    rng = np.random.default_rng(1)
    for action in rng.uniform(-1, 1, (5, 6)):
        env.step(action)
    actions = rng.uniform(-1, 1, (10, 6))
    state = env.save_state()
    first = [env.step(action)[:2] for action in actions]
    env.restore_state(state)
    second = [env.step(action)[:2] for action in actions]
    for (obs_a, reward_a), (obs_b, reward_b) in zip(first, second):
        np.testing.assert_allclose(obs_a, obs_b, atol=1e-6)
        assert reward_a == pytest.approx(reward_b, abs=1e-6)
    env.discard_state(state)
    with pytest.raises(pybullet.error):
        env.restore_state(state)  # released: the engine no longer has it
    env.close()


def test_graph_observation_layout():
    env = make(robot="floating", obs_mode="graph")
    observation, _ = env.reset(seed=0, options={"peg_pose": [0.01, -0.02, 0.03, 0, 0, 0], "hole_pose": [0.5, 0, 0.3]})
    nodes = observation["nodes"]
    np.testing.assert_array_equal(nodes[0, :3], [1, 0, 0])  # node 0: the controlled peg
    np.testing.assert_array_equal(nodes[1, :3], [0, 1, 0])  # node 1: the hole
    cfg = env.unwrapped.config
    center = np.array([0.01, -0.02, 0.03 + cfg.peg_length / 2])  # tip + half length along the upright axis
    np.testing.assert_allclose(nodes[0, 3:6], center, atol=1e-6)
    np.testing.assert_allclose(nodes[0, 6:12], [1, 0, 0, 0, 1, 0], atol=1e-6)
    np.testing.assert_array_equal(observation["edge_index"], [[0, 1], [1, 0]])
    np.testing.assert_allclose(observation["edge_attr"][0, :3], nodes[1, 3:6] - nodes[0, 3:6], atol=1e-6)
    np.testing.assert_allclose(observation["edge_attr"][0, 3], np.linalg.norm(center), atol=1e-6)
    np.testing.assert_array_equal(observation["node_mask"], [1, 1])
    flat_env = make(robot="floating", obs_mode="flat")
    flat, _ = flat_env.reset(seed=0, options={"peg_pose": [0.01, -0.02, 0.03, 0, 0, 0], "hole_pose": [0.5, 0, 0.3]})
    np.testing.assert_array_equal(flat, nodes.ravel())


def test_observation_is_invariant_to_hole_pose():
    """Everything is in the hole frame: moving/rotating the hole leaves the observation unchanged."""
    env = make(robot="floating", obs_mode="flat")
    peg_pose = [0.01, 0.005, 0.04, 0.05, -0.05, 0.1]
    first, _ = env.reset(seed=0, options={"peg_pose": peg_pose, "hole_pose": [0.5, 0.0, 0.0]})
    second, _ = env.reset(seed=0, options={"peg_pose": peg_pose, "hole_pose": [0.55, -0.08, 0.7]})
    np.testing.assert_allclose(first, second, atol=1e-5)


def test_keypoint_distance_and_reward_terms_match_hand_computation():
    depth, offset_x, height = 0.04, 0.01, 0.02
    params = [[10.0, 0.0], [100.0, 1.0]]
    env = make(
        robot="floating",
        hole_depth=depth,
        reward={"kernel_params": params, "action_penalty": 0.5, "relative_to_goal": False},
    )
    _, info = env.reset(seed=0, options={"peg_pose": [offset_x, 0, height, 0, 0, 0]})
    # An upright peg shifted by (dx, 0, dz) moves every keypoint by the same vector.
    expected = math.hypot(offset_x, height + depth)
    assert info["keypoint_distance"] == pytest.approx(expected, abs=1e-6)
    action = np.array([0.2, 0, 0, 0, 0, 0], np.float32)
    _, reward, _, _, info = env.step(action)
    x = info["keypoint_distance"]
    hand_kernel = 1 / (math.exp(10 * x) + 0 + math.exp(-10 * x)) + 1 / (math.exp(100 * x) + 1 + math.exp(-100 * x))
    terms = info["reward_terms"]
    assert terms["keypoint"] == pytest.approx(hand_kernel, rel=1e-9)
    assert terms["action_penalty"] == pytest.approx(-0.5 * 0.2**2, rel=1e-6)
    assert terms["success_bonus"] == 0.0
    assert reward == pytest.approx(sum(terms.values()))
    # The peg moved 2 mm toward +x, so the distance grew accordingly.
    assert x == pytest.approx(math.hypot(offset_x + 0.002, height + depth), abs=5e-4)


def test_multiscale_kernel_values():
    assert multiscale_kernel(0.0, [[10.0, 0.0]]) == pytest.approx(0.5)
    assert multiscale_kernel(0.0, [[10.0, 0.0], [100.0, 2.0]]) == pytest.approx(0.5 + 0.25)
    assert multiscale_kernel(0.1, [[10.0, 0.0]]) == pytest.approx(1 / (math.e + 1 / math.e))
    assert multiscale_kernel(10.0, [[1000.0, 0.0]]) == pytest.approx(0.0)  # no overflow far away


def test_relative_kernel_is_zero_at_goal_and_negative_elsewhere():
    params = [[10.0, 0.0], [100.0, 1.0]]
    env = make(robot="floating", reward={"kernel_params": params})
    env.reset(seed=0, options={"peg_pose": [0.0, 0.0, 0.02, 0, 0, 0]})
    _, _, _, _, info = env.step(np.zeros(6, np.float32))
    x = info["keypoint_distance"]
    hand = 1 / (math.exp(10 * x) + math.exp(-10 * x)) + 1 / (math.exp(100 * x) + 1 + math.exp(-100 * x)) - (0.5 + 1 / 3)
    assert info["reward_terms"]["keypoint"] == pytest.approx(hand, rel=1e-9)
    assert hand < 0


def test_linear_kernel_and_success_bonus_at_goal():
    env = make(robot="floating", reward={"kernel": "linear", "linear_scale": 3.0, "success_bonus": 7.0})
    depth = env.unwrapped.config.hole_depth
    env.reset(seed=0, options={"peg_pose": [0, 0, -depth, 0, 0, 0]})
    _, reward, terminated, truncated, info = env.step(np.zeros(6, np.float32))
    assert info["is_success"] and terminated and not truncated
    assert info["reward_terms"]["success_bonus"] == 7.0
    assert info["reward_terms"]["keypoint"] == pytest.approx(-3.0 * info["keypoint_distance"])
    assert info["keypoint_distance"] < 1e-3


def test_sparse_kernel_rewards_only_success():
    """kernel=sparse with zero penalties: reward 0 away from the goal (however close), the bonus at it."""
    env = make(robot="floating", reward={"kernel": "sparse", "success_bonus": 5.0})
    depth = env.unwrapped.config.hole_depth
    env.reset(seed=0, options={"peg_pose": [0.0, 0.0, 0.02, 0, 0, 0]})
    _, reward, terminated, _, info = env.step(np.full(6, 0.5, np.float32))
    assert info["keypoint_distance"] > 0.01 and not terminated
    assert reward == 0.0 and info["reward_terms"]["keypoint"] == 0.0
    env.reset(seed=0, options={"peg_pose": [0, 0, -depth, 0, 0, 0]})
    _, reward, terminated, _, info = env.step(np.zeros(6, np.float32))
    assert info["is_success"] and terminated
    assert reward == 5.0


def test_start_state_round_trip_including_partial_insertion():
    env = make(robot="panda")
    for peg_pose in ([0.02, -0.01, 0.05, 0.1, -0.05, 0.2], [0.0005, 0.0, -0.01, 0.0, 0.0, 0.3]):
        env.reset(seed=0, options={"peg_pose": peg_pose, "hole_pose": [0.5, 0.05, 0.2]})
        state = env.unwrapped.get_start_state()
        np.testing.assert_allclose(state["peg_pose"], peg_pose, atol=2e-3)
        np.testing.assert_allclose(state["hole_pose"], [0.5, 0.05, 0.2], atol=1e-9)


@pytest.mark.parametrize("robot", ROBOTS)
def test_scripted_controller_inserts(robot):
    env = make(robot=robot, clearance=0.001)
    policy = ScriptedInsertionPolicy(env)
    results = [run_episode(env, policy, seed=seed)[0] for seed in range(5)]
    assert all(results), results


def test_square_peg_scripted():
    env = make(robot="floating", peg_shape="box")
    policy = ScriptedInsertionPolicy(env)
    assert all(run_episode(env, policy, seed=seed)[0] for seed in range(3))


def test_alignment_term_pays_for_lining_up_above_the_hole():
    """``alignment_weight`` (default 1 for a box peg): the kernel of the keypoints' distance across the
    hole axis, so a square peg hovering above the hole is paid for its yaw at any height (the
    depth-dominated keypoint distance barely sees it there). A cylinder has no such term by default."""
    angle, height = 0.1, 0.02
    terms = {}
    for weight in (0.0, 1.0):
        env = make(robot="floating", peg_shape="box", alignment_weight=weight)
        radius = env.unwrapped.config.peg_radius
        for yaw in (0.0, angle):
            env.reset(seed=0, options={"peg_pose": [0, 0, height, 0, 0, yaw]})
            _, reward, _, _, info = env.step(np.zeros(6, np.float32))
            assert reward == pytest.approx(sum(info["reward_terms"].values()))
            terms[weight, yaw] = info
    assert "alignment" not in terms[0.0, 0.0]["reward_terms"]
    assert terms[1.0, 0.0]["alignment_distance"] < 1e-4  # lined up: only the settling of one step
    # Face-centre keypoints turned by the yaw move 2 r sin(yaw / 2) across the axis, whatever the height.
    assert terms[1.0, angle]["alignment_distance"] == pytest.approx(2 * radius * math.sin(angle / 2), rel=0.05)
    aligned, turned = terms[1.0, 0.0]["reward_terms"]["alignment"], terms[1.0, angle]["reward_terms"]["alignment"]
    params = env.unwrapped.config.reward.kernel_params
    expected = multiscale_kernel(terms[1.0, angle]["alignment_distance"], params) - multiscale_kernel(0.0, params)
    assert turned == pytest.approx(expected) and expected < -0.2
    assert aligned == pytest.approx(0.0, abs=1e-3)
    keypoint_gap = terms[1.0, 0.0]["reward_terms"]["keypoint"] - terms[1.0, angle]["reward_terms"]["keypoint"]
    assert keypoint_gap < 0.1 * (aligned - turned)
    for shape, has_term in (("box", True), ("cylinder", False)):  # the defaults
        default = make(robot="floating", peg_shape=shape)
        default.reset(seed=0)
        assert ("alignment" in default.step(np.zeros(6, np.float32))[4]["reward_terms"]) == has_term


def test_alignment_term_makes_leaning_over_the_opening_cost():
    """Plain PPO on the square peg at 0.1 mm, before the alignment term, settled leaning the peg 40-65
    degrees over the opening: the keypoint distance alone scores such a pose (here one that is a
    valid start, tip 18.5 mm up) better than standing upright just above the opening. With the
    alignment term (the box default) it is worse."""
    leaning = [0.0066, 0.0211, 0.0185, -0.7474, 1.3788, -2.9265]
    upright = [0.0, 0.0, 0.001, 0.0, 0.0, 0.0]
    outcome = {}
    for weight in (0.0, None):
        env = make(robot="floating", peg_shape="box", clearance=0.0001, alignment_weight=weight)
        for name, pose in (("leaning", leaning), ("upright", upright)):
            env.reset(seed=0, options={"peg_pose": pose})
            _, reward, _, _, info = env.step(np.zeros(6, np.float32))
            outcome[weight, name] = reward, info["keypoint_distance"]
    assert outcome[0.0, "leaning"][1] < outcome[0.0, "upright"][1] - 0.001  # ~39.5 mm against ~41 mm
    assert outcome[0.0, "leaning"][0] > outcome[0.0, "upright"][0]
    assert outcome[None, "leaning"][0] < outcome[None, "upright"][0] - 0.5


def test_misaligned_peg_is_blocked_by_the_hole():
    env = make(robot="floating", clearance=0.001)
    env.reset(seed=0, options={"peg_pose": [0.004, 0, 0.01, 0, 0, 0]})
    for _ in range(15):
        _, _, terminated, _, info = env.step(np.array([0, 0, -1, 0, 0, 0], np.float32))
        assert not info["is_success"]
    assert info["contact_force"] > 0
    assert env.unwrapped.get_start_state()["peg_pose"][2] > -0.002, "the peg went through the hole's rim"


def test_action_mask_freezes_inactive_dofs():
    env = make(robot="floating", action_mask=[1, 1, 1, 0, 0, 1])
    env.reset(seed=0, options={"peg_pose": [0, 0, 0.05, 0, 0, 0]})
    for _ in range(5):
        env.step(np.array([0, 0, 0, 1, 1, 0], np.float32))  # roll/pitch requests are masked out
    roll, pitch = env.unwrapped.get_start_state()["peg_pose"][3:5]
    assert abs(roll) < 1e-3 and abs(pitch) < 1e-3


def test_domain_randomization_changes_geometry_and_noise():
    env = make(
        robot="floating",
        obs_mode="flat",
        randomization={
            "clearance_range": [0.0005, 0.003],
            "peg_size_scale_range": [0.8, 1.2],
            "friction_range": [0.2, 1.0],
            "observation_noise_std": 0.001,
        },
    )
    sizes = set()
    for seed in range(4):
        observation, _ = env.reset(seed=seed)
        sizes.add(tuple(np.round(observation[-2:], 6)))  # hole node: opening half-width, depth
    assert len(sizes) == 4
    first, _ = env.reset(seed=7, options={"peg_pose": [0, 0, 0.05, 0, 0, 0]})
    second, _ = env.reset(seed=8, options={"peg_pose": [0, 0, 0.05, 0, 0, 0]})
    assert not np.allclose(first[3:6], second[3:6])  # observation noise


def test_rgb_rendering_headless():
    env = make(robot="panda", render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    cfg = env.unwrapped.config.sim
    assert frame.shape == (cfg.image_height, cfg.image_width, 3) and frame.dtype == np.uint8
    assert frame.std() > 5  # not a blank image
    env.close()


def test_egl_renderer_loads_or_fails_clearly():
    try:
        env = make(robot="floating", render_mode="rgb_array", sim={"renderer": "egl"})
    except RuntimeError as error:
        assert "egl" in str(error).lower()
        return
    env.reset(seed=0)
    assert env.render().shape[2] == 3
    env.close()


def test_panda_reports_inverse_kinematics_residual():
    env = make(robot="panda")
    env.reset(seed=0)
    residuals = [env.step(np.array([1, 0, 0, 0, 0, 0], np.float32))[4]["ik_residual"] for _ in range(3)]
    assert all(0 <= r < 0.03 for r in residuals)  # the command leads the peg by at most two steps


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "bad_action, message",
    [
        (np.array([np.nan, 0, 0, 0, 0, 0]), "NaN"),
        (np.array([0, np.inf, 0, 0, 0, 0]), "NaN or Inf"),
        (np.zeros(5), "shape"),
        (np.zeros((2, 6)), "shape"),
        ("left", "6 numbers"),
    ],
)
def test_bad_actions_raise(bad_action, message):
    env = make(robot="floating")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.unwrapped.step(bad_action)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"clearance": -0.001}, "clearance"),
        ({"robot": "ur5"}, "robot"),
        ({"obs_mode": "pixels"}, "obs_mode"),
        ({"peg_shape": "star"}, "peg_shape"),
        ({"clearence": 0.001}, "clearence"),
        ({"sim": {"substeps": 0}}, "substeps"),
        ({"sim": {"time_stepp": 0.01}}, "sim.time_stepp"),
        ({"action_mask": [1, 1, 1]}, "action_mask"),
        ({"hole_depth": 0.2}, "hole_depth"),
        ({"reward": {"kernel": "cubic"}}, "reward.kernel"),
    ],
)
def test_bad_config_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make(**kwargs)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"peg_pos": [0, 0, 0.05, 0, 0, 0]}, "unknown reset option"),
        ({"peg_pose": [0, 0, 0.05]}, "6 finite numbers"),
        ({"peg_pose": [0, 0, np.nan, 0, 0, 0]}, "6 finite numbers"),
        ({"hole_pose": "center"}, "hole_pose"),
        ({"peg_pose": [0.01, 0, -0.01, 0, 0, 0]}, "not through the opening"),
        ({"peg_pose": [0, 0, -0.5, 0, 0, 0]}, "below the hole floor"),
        ("peg", "must be a dict"),
    ],
)
def test_malformed_reset_options_raise(options, message):
    env = make(robot="floating")
    with pytest.raises(ValueError, match=message):
        env.reset(seed=0, options=options)


@pytest.mark.parametrize("robot", ROBOTS)
@pytest.mark.parametrize(
    "peg_pose",
    [
        [0.0, 0.0, 0.005, math.pi / 2, 0.0, 0.0],  # lying across the opening, tip over its centre
        [0.03, 0.0, 0.004, 0.0, 0.6, 0.0],  # tilted onto the top face beside the opening
        [0.03, 0.0, 0.0, math.pi, 0.0, 0.0],  # upside down beside the opening: the body points into the top face
    ],
)
def test_start_cutting_into_the_hole_top_is_rejected_for_both_robots(robot, peg_pose):
    env = make(robot=robot)
    with pytest.raises(ValueError, match="into the hole's top face"):
        env.reset(seed=0, options={"peg_pose": peg_pose})


@pytest.mark.parametrize(
    "peg_pose",
    [
        [0.001, 0.0, 0.001, 0.15, 0.0, 0.0],  # tilted, its lowest edge dipping into the opening
        [0.03, 0.0, 0.01, 0.0, 0.6, 0.0],  # tilted beside the opening, clear of the top face
        [0.0, 0.0, 0.03, 0.15, -0.15, 0.3],  # a corner of the default start range
    ],
)
def test_starts_clear_of_the_hole_top_are_accepted(peg_pose):
    env = make(robot="floating")
    env.reset(seed=0, options={"peg_pose": peg_pose})
    np.testing.assert_allclose(env.unwrapped.get_start_state()["peg_pose"], peg_pose, atol=1e-6)


def test_unreachable_panda_start_raises():
    env = make(robot="panda")
    with pytest.raises(ValueError, match="cannot reach"):
        env.reset(seed=0, options={"hole_pose": [1.5, 0.0, 0.0]})


def test_step_before_reset_raises():
    env = make(robot="floating").unwrapped
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(6))
