"""Packed-objects environment: API conformance, determinism, state, start states, rewards, bad input.

Default layout (``PackedObjectsConfig``): a row of 5 slots 0.044 m apart (4 cm boxes, 4 mm gaps),
the held box's slot in the middle at the tray origin, packed boxes at x = -0.088, -0.044, 0.044, 0.088.
"""

import math
import warnings

import gymnasium as gym
import numpy as np
import pybullet
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env

import envs
from envs.geometry import box_penetration, euler_to_matrix

ROBOTS = ["floating", "panda"]
OBS_MODES = ["graph", "flat"]
PITCH = 0.044
GOAL_POSES = [[-2 * PITCH, 0.0, 0.0], [-PITCH, 0.0, 0.0], [PITCH, 0.0, 0.0], [2 * PITCH, 0.0, 0.0]]
SEATED = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
ABOVE = [0.0, 0.0, 0.06, 0.0, 0.0, 0.0]


def make(**kwargs):
    kwargs.setdefault("robot", "floating")
    return gym.make(envs.PACKED_OBJECTS_ID, **kwargs)


def with_box(index, pose):
    poses = [list(p) for p in GOAL_POSES]
    poses[index] = pose
    return poses


def assert_obs_equal(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    else:
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- API
@pytest.mark.parametrize("robot", ROBOTS)
@pytest.mark.parametrize("obs_mode", OBS_MODES)
def test_gymnasium_env_checker(robot, obs_mode):
    # Not the default layout (tests/test_peg_insertion_env.py checks every registered id with it).
    env = make(robot=robot, obs_mode=obs_mode, num_objects=5, grid_rows=2, num_displaced=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any checker warning fails the test
        gym_check_env(env.unwrapped, skip_render_check=True)
    env.close()


def test_stable_baselines3_env_checker_flat():
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = make(obs_mode="flat")
    sb3_check_env(env.unwrapped, warn=True)
    env.close()


def test_registration_has_time_limit():
    env = make()
    assert env.spec.max_episode_steps == envs.PACKED_OBJECTS_MAX_STEPS
    env.reset(seed=0)
    terminated = truncated = False
    steps = 0
    while not (terminated or truncated):
        _, _, terminated, truncated, _ = env.step(np.zeros(6, np.float32))
        steps += 1
    assert truncated and not terminated, "holding still above the occluded slot must end only by the time limit"
    assert steps == envs.PACKED_OBJECTS_MAX_STEPS


@pytest.mark.parametrize("obs_mode", OBS_MODES)
def test_same_seed_and_actions_give_identical_rollouts(obs_mode):
    actions = np.random.default_rng(0).uniform(-1, 1, (30, 6)).astype(np.float32)
    rollouts = []
    for _ in range(2):
        env = make(obs_mode=obs_mode)
        observation, _ = env.reset(seed=123)
        record = [(observation, 0.0)]
        for action in actions:
            observation, reward, terminated, truncated, _ = env.step(action)
            record.append((observation, reward))
        rollouts.append(record)
        env.close()
    for (obs_a, reward_a), (obs_b, reward_b) in zip(*rollouts):
        assert_obs_equal(obs_a, obs_b)
        assert reward_a == reward_b


def test_solver_residual_threshold_reaches_the_engine():
    """``sim.solver_residual_threshold`` lets the solver stop early: a seeded rollout stays deterministic
    but differs from the one under Bullet's default threshold."""
    actions = np.random.default_rng(0).uniform(-1, 1, (30, 6)).astype(np.float32)

    def final_state(**sim):
        env = make(obs_mode="flat", sim=sim)
        env.reset(seed=123)
        for action in actions:
            observation, *_ = env.step(action)
        env.close()
        return observation

    loose = final_state(solver_residual_threshold=1e-3)
    np.testing.assert_array_equal(loose, final_state(solver_residual_threshold=1e-3))
    assert np.abs(loose - final_state()).max() > 1e-6


@pytest.mark.parametrize("rigid_boxes", [True, False])
def test_save_step_restore_step_reproduces(rigid_boxes):
    env = make(obs_mode="flat", rigid_boxes=rigid_boxes).unwrapped
    env.reset(seed=5)
    rng = np.random.default_rng(1)
    for action in rng.uniform(-1, 1, (5, 6)):
        env.step(action)
    actions = rng.uniform(-1, 1, (10, 6))
    state = env.save_state()
    first = [env.step(action)[:2] for action in actions]
    if not rigid_boxes:
        env.reset(seed=6)  # a different tray pose and arrangement in between
    env.restore_state(state)
    second = [env.step(action)[:2] for action in actions]
    for (obs_a, reward_a), (obs_b, reward_b) in zip(first, second):
        np.testing.assert_allclose(obs_a, obs_b, atol=1e-6)
        assert reward_a == pytest.approx(reward_b, abs=1e-6)
    if rigid_boxes:  # the boxes are built anew at every reset: an earlier episode's snapshot is refused
        env.reset(seed=6)
        with pytest.raises(ValueError, match="taken in an earlier episode; with rigid_boxes=True"):
            env.restore_state(state)
    env.discard_state(state)
    env.close()


def test_rigid_boxes_keep_a_seeded_episode_independent_of_the_episodes_before_it():
    """Rigid bodies' contacts carry history between episodes unless the boxes are built anew at reset."""
    env = make(rigid_boxes=True, robot="floating", terminate_on_success=False)
    actions = np.random.default_rng(0).uniform(-1, 1, (40, 6)).astype(np.float32)

    def rewards(seed):
        env.reset(seed=seed)
        return [env.step(action)[1] for action in actions]

    first = rewards(0)
    rewards(1)
    assert rewards(0) == first
    env.close()


# ---------------------------------------------------------------- observation
def test_graph_nodes_held_box_packed_boxes_then_tray():
    env = make()
    observation, _ = env.reset(seed=0, options={"object_poses": GOAL_POSES, "held_pose": ABOVE})
    layout = env.unwrapped.task.layout
    nodes, types = observation["nodes"], observation["nodes"][:, layout.slice("type")]
    np.testing.assert_array_equal(types, [[1, 0, 0]] + [[0, 0, 1]] * 4 + [[0, 1, 0]])
    cfg = env.unwrapped.config
    held_centre = [0.0, 0.0, 0.06 + cfg.held_box_height / 2]
    np.testing.assert_allclose(nodes[0, layout.slice("pos")], held_centre, atol=1e-6)
    box_centres = [[x, y, cfg.box_height / 2] for x, y, _ in GOAL_POSES]
    np.testing.assert_allclose(nodes[1:5, layout.slice("pos")], box_centres, atol=1e-6)
    np.testing.assert_allclose(nodes[1:5, layout.slice("keypoints")], 0.0, atol=1e-6)  # at their goals
    held_offsets = nodes[0, layout.slice("keypoints")].reshape(-1, 3)
    np.testing.assert_allclose(held_offsets, [[0, 0, 0.06]] * cfg.num_keypoints, atol=1e-6)
    np.testing.assert_allclose(nodes[:5, layout.slice("size")], [[0.02, 0.06]] + [[0.02, 0.04]] * 4)


def test_observation_is_invariant_to_tray_pose():
    env = make(obs_mode="flat")
    options = {"object_poses": with_box(1, [-0.03, 0.002, 0.2]), "held_pose": [0.005, 0, 0.05, 0.05, 0, 0.1]}
    first, _ = env.reset(seed=0, options={**options, "tray_pose": [0.5, 0.0, 0.0]})
    second, _ = env.reset(seed=0, options={**options, "tray_pose": [0.45, -0.06, 0.5]})
    np.testing.assert_allclose(first, second, atol=1e-5)


def test_more_objects_give_more_nodes_of_the_same_features():
    """A graph policy trained with N boxes reads N + 2 boxes too: same node features, more nodes."""
    small, large = make(num_objects=2), make(num_objects=4)
    obs_small, _ = small.reset(seed=0)
    obs_large, _ = large.reset(seed=0)
    assert obs_small["nodes"].shape == (4, obs_large["nodes"].shape[1])
    assert obs_large["nodes"].shape[0] == 6
    assert small.unwrapped.task.max_nodes == 4 and large.unwrapped.task.max_nodes == 6
    np.testing.assert_array_equal(obs_large["node_mask"], np.ones(6))
    flat = make(num_objects=2, obs_mode="flat")
    assert flat.observation_space.shape == (4 * obs_small["nodes"].shape[1],)


# ---------------------------------------------------------------- start states
@pytest.mark.parametrize("num_displaced", [1, 2])
def test_occluders_overlap_the_slot_at_reset(num_displaced):
    env = make(num_displaced=num_displaced)
    cfg = env.unwrapped.config
    half = [cfg.box_half_size, cfg.box_half_size, cfg.box_height / 2]
    slot = (np.array([0.0, 0.0, cfg.box_height / 2]), np.eye(3), half)  # the middle slot
    for seed in range(6):
        env.reset(seed=seed)
        poses = env.unwrapped.get_start_state()["object_poses"]
        overlaps = [
            box_penetration(*slot, np.array([x, y, half[2]]), euler_to_matrix(0, 0, yaw), half) for x, y, yaw in poses
        ]
        occluders = [depth for depth in overlaps if depth > 0.005]  # at least 5 mm into the slot
        assert len(occluders) == num_displaced, (seed, overlaps)
        assert sum(np.allclose(p, g, atol=1e-6) for p, g in zip(poses, GOAL_POSES)) == 4 - num_displaced


@pytest.mark.parametrize("robot, atol", [("floating", 1e-6), ("panda", 2e-3)])
def test_explicit_start_state_round_trip(robot, atol):
    env = make(robot=robot)
    options = {
        "tray_pose": [0.52, 0.03, -0.3],
        "object_poses": with_box(2, [0.03, -0.002, -0.2]),
        "held_pose": [0.004, -0.003, 0.05, 0.05, -0.04, 0.3],
    }
    env.reset(seed=0, options=options)
    state = env.unwrapped.get_start_state()
    np.testing.assert_allclose(state["tray_pose"], options["tray_pose"], atol=1e-12)
    np.testing.assert_allclose(state["object_poses"], options["object_poses"], atol=1e-6)
    np.testing.assert_allclose(state["held_pose"], options["held_pose"], atol=atol)
    env.reset(seed=1, options=state)  # what get_start_state returns is a valid start
    np.testing.assert_allclose(env.unwrapped.get_start_state()["object_poses"], options["object_poses"], atol=1e-6)


# ---------------------------------------------------------------- reward and success
def test_reward_terms_match_hand_computation():
    dx, dy = -0.006, 0.005
    env = make(
        reward={"kernel": "linear", "linear_scale": 10.0, "action_penalty": 0.5},
        held_object_weight=2.0,
        other_object_weight=1.0,
        insertion_weight=0.5,
    )
    options = {"object_poses": with_box(0, [-2 * PITCH + dx, dy, 0.0]), "held_pose": SEATED}
    _, info = env.reset(seed=0, options=options)
    offset = math.hypot(dx, dy)  # a translated upright box: every keypoint moves by the offset
    np.testing.assert_allclose(info["keypoint_distances"], [0, offset, 0, 0, 0], atol=1e-6)
    assert info["fraction_in_place"] == pytest.approx(4 / 5)  # box 0 is 7.8 mm off, beyond 5 mm

    _, reward, terminated, _, info = env.step(np.zeros(6, np.float32))
    terms = info["reward_terms"]
    assert terms["keypoint"] == pytest.approx(-10.0 * offset / (2.0 + 4 * 1.0), abs=1e-4)  # boxes settle ~10 um
    assert terms["insertion"] == pytest.approx(-0.5 * 10.0 * info["insertion_distance"], rel=1e-9)
    assert info["insertion_distance"] < 1e-3  # seated
    assert terms["success_bonus"] == 0.0 and not info["is_success"] and not terminated
    assert reward == pytest.approx(sum(terms.values()))

    _, _, _, _, info = env.step(np.array([0, 0, 0.4, 0, 0, 0], np.float32))
    assert info["reward_terms"]["action_penalty"] == pytest.approx(-0.5 * 0.4**2, rel=1e-6)


def test_alignment_term_pays_for_the_held_box_lined_up_over_its_slot():
    """``alignment_weight``: weight * kernel(mean distance of the held box's keypoints across the
    vertical), whatever the box's height; off (no term) by default."""
    shift = 0.004
    shifted = [ABOVE[0] + shift, *ABOVE[1:]]  # the held box translated sideways over its slot
    default = make()
    default.reset(seed=0)
    assert "alignment" not in default.step(np.zeros(6, np.float32))[4]["reward_terms"]
    env = make(reward={"kernel": "linear", "linear_scale": 10.0}, alignment_weight=2.0)
    found = {}
    for name, held in (("above", ABOVE), ("shifted", shifted)):
        env.reset(seed=0, options={"object_poses": GOAL_POSES, "held_pose": held})
        _, reward, _, _, info = env.step(np.zeros(6, np.float32))
        assert info["reward_terms"]["alignment"] == pytest.approx(-2.0 * 10.0 * info["alignment_distance"])
        assert reward == pytest.approx(sum(info["reward_terms"].values()))
        found[name] = info["alignment_distance"]
    assert found["above"] < 2e-4  # lined up: what one step of settling moves
    assert found["shifted"] == pytest.approx(shift, abs=3e-4)  # every keypoint moved sideways by the shift


def test_in_place_term_charges_every_object_out_of_place():
    """``in_place_weight``: -weight * (fraction of the num_objects + 1 objects not in place); off (no
    term) by default."""
    default = make()
    default.reset(seed=0)
    assert "in_place" not in default.step(np.zeros(6, np.float32))[4]["reward_terms"]
    env = make(in_place_weight=2.0)
    cases = (  # (box 0's offset from its goal, held pose, objects out of place)
        (0.0078, SEATED, 1),  # box 0 beyond the 5 mm tolerance
        (0.0078, ABOVE, 2),  # and the held box not seated
        (0.002, ABOVE, 1),  # box 0 within tolerance: only the held box
    )
    for offset, held, out_of_place in cases:
        options = {"object_poses": with_box(0, [-2 * PITCH, offset, 0.0]), "held_pose": held}
        env.reset(seed=0, options=options)
        _, reward, terminated, _, info = env.step(np.zeros(6, np.float32))
        assert info["fraction_in_place"] == pytest.approx(1 - out_of_place / 5)
        assert info["reward_terms"]["in_place"] == pytest.approx(-2.0 * out_of_place / 5)
        assert reward == pytest.approx(sum(info["reward_terms"].values())) and not terminated


def test_everything_in_place_succeeds_and_terminates():
    env = make(reward={"success_bonus": 7.0})
    _, info = env.reset(seed=0, options={"object_poses": GOAL_POSES, "held_pose": SEATED})
    assert info["fraction_in_place"] == 1.0
    _, _, terminated, truncated, info = env.step(np.zeros(6, np.float32))
    assert info["is_success"] and terminated and not truncated
    assert info["reward_terms"]["success_bonus"] == 7.0
    assert info["reward_terms"]["keypoint"] == pytest.approx(0.0, abs=1e-3)  # relative kernel: 0 at the goal


def test_seated_box_with_a_packed_box_yawed_beyond_tolerance_is_no_success():
    env = make()
    env.reset(seed=0, options={"object_poses": with_box(3, [2 * PITCH, 0, 0.2]), "held_pose": SEATED})
    _, _, terminated, _, info = env.step(np.zeros(6, np.float32))
    assert info["is_seated"] and not info["is_success"] and not terminated
    assert info["max_orientation_error"] == pytest.approx(0.2, abs=2e-3)


def test_terminate_when_wedged_ends_a_seated_episode_with_a_neighbour_out_of_place():
    """``terminate_when_wedged``: seated held box and box 0 7.8 mm off its goal -> terminated (not truncated),
    ``is_wedged`` in info; off by default; an unseated box or a seated one with every neighbour in place
    is no dead end."""
    wedged = {"object_poses": with_box(0, [-2 * PITCH, 0.0078, 0.0]), "held_pose": SEATED}
    default = make()
    default.reset(seed=0, options=wedged)
    _, _, terminated, _, info = default.step(np.zeros(6, np.float32))
    assert info["is_wedged"] and not terminated
    env = make(terminate_when_wedged=True)
    env.reset(seed=0, options=wedged)
    _, _, terminated, truncated, info = env.step(np.zeros(6, np.float32))
    assert info["is_wedged"] and terminated and not truncated and not info["is_success"]
    env.reset(seed=0, options={**wedged, "held_pose": ABOVE})
    _, _, terminated, _, info = env.step(np.zeros(6, np.float32))
    assert not info["is_wedged"] and not terminated
    env.reset(seed=0, options={"object_poses": GOAL_POSES, "held_pose": SEATED})
    _, _, terminated, _, info = env.step(np.zeros(6, np.float32))
    assert not info["is_wedged"] and info["is_success"] and terminated


def test_a_quarter_turned_box_is_in_place():
    env = make()
    _, info = env.reset(seed=0, options={"object_poses": with_box(1, [-PITCH, 0, math.pi / 2]), "held_pose": ABOVE})
    assert info["objects_in_place"] == 4
    assert info["keypoint_distances"][2] == pytest.approx(0.0, abs=1e-6)


def roll_box(env, index, angle):
    """Roll packed box ``index`` about the tray's y axis by ``angle``, keeping its centre on its goal."""
    task = env.unwrapped.task
    client, body = task._sim.client, task._box_ids[index]
    position, quat = client.getBasePositionAndOrientation(body)
    roll = pybullet.getQuaternionFromEuler([0.0, angle, 0.0])
    client.resetBasePositionAndOrientation(
        body, position, pybullet.multiplyTransforms([0, 0, 0], quat, [0, 0, 0], roll)[1]
    )


def test_a_cube_rolled_onto_a_side_is_in_place_and_reported_upright():
    env = make()
    env.reset(seed=0, options={"object_poses": GOAL_POSES, "held_pose": ABOVE})
    roll_box(env, 1, math.pi / 2)  # the 4 cm cube now stands on a side face, filling its slot exactly
    _, _, _, _, info = env.step(np.zeros(6, np.float32))
    assert info["objects_in_place"] == 4
    assert info["keypoint_distances"][2] == pytest.approx(0.0, abs=1e-4)
    assert info["max_orientation_error"] < 0.01
    state = env.unwrapped.get_start_state()  # the rolled cube is the same box upright: a valid, exact start
    np.testing.assert_allclose(state["object_poses"][1], GOAL_POSES[1], atol=1e-3)
    env.reset(seed=1, options=state)


def test_a_box_that_is_not_a_cube_rolled_onto_a_side_is_out_of_place():
    env = make(box_height=0.03)  # 4 x 4 x 3 cm: on its side it is 3 cm wide and 4 cm tall
    env.reset(seed=0, options={"object_poses": GOAL_POSES, "held_pose": ABOVE})
    roll_box(env, 1, math.pi / 2)
    _, _, _, _, info = env.step(np.zeros(6, np.float32))
    assert info["objects_in_place"] == 3
    assert info["max_orientation_error"] == pytest.approx(math.pi / 2, abs=0.02)
    assert info["keypoint_distances"][2] > 0.01


# ---------------------------------------------------------------- bad input
def test_nan_action_raises():
    env = make()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="NaN"):
        env.unwrapped.step(np.array([np.nan, 0, 0, 0, 0, 0]))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_objects": 0}, "num_objects"),
        ({"tray_size": [0.15, 0.06]}, "cannot fit in the tray"),
        ({"gap": -0.001}, "gap"),
        ({"num_displaced": 3}, "num_displaced"),
        ({"held_slot": 5}, "held_slot"),
        ({"grid_rows": 0}, "grid_rows"),
        ({"occluder_shift_range": [0.03, 0.01]}, "occluder_shift_range"),
        ({"object_yaw_tolerance": math.nan}, "object_yaw_tolerance"),
        ({"held_object_weight": 0.0, "other_object_weight": 0.0}, "must not both be 0"),
        ({"alignment_weight": -0.5}, "alignment_weight"),
        ({"in_place_weight": -1.0}, "in_place_weight"),
        ({"in_place_weight": math.nan}, "in_place_weight"),
        ({"terminate_when_wedged": 1}, "terminate_when_wedged"),
        ({"randomization": {"clearance_range": [0.001, 0.002]}}, "peg-insertion options"),
        ({"num_keypoints": 5, "keypoint_spacing": 0.02}, "num_keypoints"),
        ({"clearance": 0.001}, "clearance"),  # a peg option
    ],
)
def test_bad_config_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make(**kwargs)


@pytest.mark.parametrize(
    "options, message",
    [
        ("tray", "must be a dict"),
        ({"peg_pose": SEATED}, "unknown reset option"),
        ({"object_poses": GOAL_POSES[:3]}, "4 \\[x, y, yaw\\] triples"),
        ({"object_poses": with_box(0, [0.0, math.nan, 0.0])}, "object_poses"),
        ({"held_pose": [0, 0, 0.05]}, "6 finite numbers"),
        ({"tray_pose": "left"}, "tray_pose"),
        ({"object_poses": with_box(0, [-2 * PITCH + 0.03, 0, 0])}, r"object_poses\[0\] and object_poses\[1\]"),
        ({"object_poses": with_box(0, [-2 * PITCH - 0.02, 0, 0])}, "tray's -x wall"),
        ({"object_poses": with_box(3, [0.3, 0, 0])}, r"object_poses\[3\] .* leaves the tray"),
        (
            {"object_poses": GOAL_POSES, "held_pose": [0.03, 0, 0, 0, 0, 0]},
            r"held_pose interpenetrates object_poses\[2\]",
        ),
        (
            {"object_poses": GOAL_POSES, "held_pose": [0, 0, -0.01, 0, 0, 0]},
            "held_pose interpenetrates the tray's floor",
        ),
        (
            {"object_poses": with_box(1, [-0.01, 0, 0]), "held_pose": SEATED},
            r"held_pose interpenetrates object_poses\[1\]",
        ),
    ],
)
def test_malformed_or_interpenetrating_start_raises(options, message):
    env = make()
    with pytest.raises(ValueError, match=message):
        env.reset(seed=0, options=options)


def test_touching_boxes_are_accepted():
    """The overlap check has a small tolerance: boxes side by side (0 mm gap) are a valid start."""
    env = make()
    env.reset(seed=0, options={"object_poses": with_box(0, [-2 * PITCH + 0.004, 0, 0]), "held_pose": ABOVE})
    assert env.unwrapped.get_start_state()["object_poses"][0][0] == pytest.approx(-2 * PITCH + 0.004, abs=1e-6)


@pytest.mark.parametrize("collides", [True, False])
def test_a_box_pushed_out_of_the_tray_lands_on_the_ground(collides, monkeypatch):
    """Without ground collisions it would fall forever, and its coordinates (tens of metres within an
    episode) would swamp the observation normaliser's statistics during training."""
    monkeypatch.setattr(type(make().unwrapped.task), "ground_collides", collides)
    env = make()
    env.reset(seed=0, options={"object_poses": GOAL_POSES, "held_pose": ABOVE})
    task = env.unwrapped.task
    client, body = task._sim.client, task._box_ids[0]
    _, quat = client.getBasePositionAndOrientation(body)
    client.resetBasePositionAndOrientation(body, [0.8, 0.4, 0.1], quat)  # beside the tray, 10 cm up
    for _ in range(40):  # one second
        env.step(np.zeros(6, np.float32))
    height = client.getBasePositionAndOrientation(body)[0][2]
    if collides:
        assert height == pytest.approx(0.02, abs=2e-3)  # resting on the ground: half its 4 cm height
    else:
        assert height < -1.0
