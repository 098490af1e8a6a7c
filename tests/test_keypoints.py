"""Keypoint distances (envs/keypoints.py) and their aggregation in the reward (envs/rewards.py)."""

import math

import numpy as np
import pytest

from envs.config import RewardConfig
from envs.keypoints import (
    alignment_distance,
    box_symmetry_rotations,
    goal_keypoints,
    keypoint_errors,
    local_keypoints,
    stack_symmetries,
    symmetry_rotations,
)
from envs.rewards import KeypointReward

RADIUS, LENGTH, K, SPACING = 0.012, 0.08, 3, 0.03


def yaw(angle):
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def errors(positions, rotations, points, goal_positions, goal_rotations, symmetries):
    return keypoint_errors(
        positions, rotations, points, goal_keypoints(goal_positions, goal_rotations, points, symmetries)
    )


def distance(shape, rotation, translation=(0.0, 0.0, 0.0)):
    """Mean keypoint distance of one object posed at (translation, rotation) vs. the identity goal."""
    points = local_keypoints(shape, RADIUS, LENGTH, K, SPACING)[None]
    _, d = errors(
        np.array([translation], float),
        rotation[None],
        points,
        np.zeros((1, 3)),
        np.eye(3)[None],
        symmetry_rotations(shape),
    )
    return float(d[0])


def test_translation_distance_is_its_length():
    assert distance("cylinder", np.eye(3), (0.003, -0.004, 0.0)) == pytest.approx(0.005)
    assert distance("box", np.eye(3), (0.0, 0.0, 0.002)) == pytest.approx(0.002)


def test_cylinder_is_blind_to_rotation_about_its_axis_only():
    assert distance("cylinder", yaw(0.7)) == pytest.approx(0.0, abs=1e-12)
    tilt = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(0.1), -math.sin(0.1)], [0.0, math.sin(0.1), math.cos(0.1)]])
    assert distance("cylinder", tilt) > 1e-3


def test_square_peg_sees_yaw_and_fits_at_every_quarter_turn():
    small = distance("box", yaw(0.1))
    # Off-axis keypoints at the face centres move by 2 r sin(theta / 2) under a yaw of theta.
    assert small == pytest.approx(2 * RADIUS * math.sin(0.05))
    for turns in (1, 2, 3):
        assert distance("box", yaw(turns * math.pi / 2)) == pytest.approx(0.0, abs=1e-12)
        assert distance("box", yaw(turns * math.pi / 2 + 0.1)) == pytest.approx(small)
    assert distance("box", yaw(math.pi / 4)) > small  # halfway between two fits is the worst


def test_offsets_point_to_the_nearest_symmetric_goal():
    points = local_keypoints("box", RADIUS, LENGTH, K, SPACING)
    offsets, _ = errors(
        np.zeros((1, 3)),
        yaw(math.pi / 2 + 0.05)[None],
        points[None],
        np.zeros((1, 3)),
        np.eye(3)[None],
        symmetry_rotations("box"),
    )
    assert np.abs(offsets).max() < RADIUS * 0.06  # relative to the quarter-turn goal, not the unturned one


def test_batched_objects_equal_one_by_one():
    rng = np.random.default_rng(0)
    n = 5
    positions, goals = rng.normal(size=(n, 3)) * 0.01, rng.normal(size=(n, 3)) * 0.01
    rotations = np.stack([yaw(a) for a in rng.uniform(-1, 1, n)])
    goal_rotations = np.stack([yaw(a) for a in rng.uniform(-1, 1, n)])
    points = np.stack([local_keypoints("box", RADIUS, LENGTH, K, SPACING)] * n)
    offsets, distances = errors(positions, rotations, points, goals, goal_rotations, symmetry_rotations("box"))
    for i in range(n):
        o, d = errors(
            positions[i : i + 1],
            rotations[i : i + 1],
            points[i : i + 1],
            goals[i : i + 1],
            goal_rotations[i : i + 1],
            symmetry_rotations("box"),
        )
        np.testing.assert_allclose(offsets[i], o[0], atol=1e-15)
        assert distances[i] == pytest.approx(d[0])


def roll(angle):
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


@pytest.mark.parametrize("half_extents, count", [((1, 1, 1), 24), ((1, 1, 1.5), 8), ((1, 2, 3), 4)])
def test_box_symmetries_are_the_rotations_that_map_the_box_onto_itself(half_extents, count):
    rotations = box_symmetry_rotations(half_extents)
    assert len(rotations) == count
    np.testing.assert_array_equal(rotations[0], np.eye(3))
    corners = np.array(np.meshgrid(*[[-h, h] for h in half_extents])).reshape(3, -1).T
    for rotation in rotations:
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(rotation) == pytest.approx(1.0)
        assert {tuple(c) for c in corners @ rotation.T} == {tuple(c) for c in corners}
    assert len({r.tobytes() for r in rotations}) == count  # no rotation twice


def cube_distance(rotation, symmetries):
    points = local_keypoints("box", 0.02, 0.04, 3, 0.015)[None]
    _, d = errors(np.zeros((1, 3)), rotation[None], points, np.zeros((1, 3)), np.eye(3)[None], symmetries)
    return float(d[0])


def test_a_cube_fits_on_every_face_but_the_quarter_turns_alone_miss_that():
    cube = box_symmetry_rotations((0.02, 0.02, 0.02))
    for rotation in (roll(math.pi / 2), roll(math.pi), roll(math.pi / 2) @ yaw(0.5 * math.pi)):
        assert cube_distance(rotation, cube) == pytest.approx(0.0, abs=1e-12)
        assert cube_distance(rotation, symmetry_rotations("box")) > 0.01
    assert cube_distance(roll(math.pi / 2 + 0.1), cube) == pytest.approx(cube_distance(roll(0.1), cube))


def test_stacked_groups_give_each_object_its_own_symmetry():
    cube, prism = box_symmetry_rotations((1, 1, 1)), box_symmetry_rotations((1, 1, 1.5))
    stacked = stack_symmetries([prism, cube])
    assert stacked.shape == (2, 24, 3, 3)
    np.testing.assert_array_equal(stacked[0, 8:], np.broadcast_to(np.eye(3), (16, 3, 3)))  # padded with identity
    points = np.stack([local_keypoints("box", 0.02, 0.04, 3, 0.015)] * 2)
    rotations = np.stack([roll(math.pi / 2)] * 2)
    _, distances = errors(np.zeros((2, 3)), rotations, points, np.zeros((2, 3)), np.stack([np.eye(3)] * 2), stacked)
    assert distances[0] > 0.01 and distances[1] == pytest.approx(0.0, abs=1e-12)  # a prism on its side does not fit


def test_unknown_shape_raises():
    with pytest.raises(ValueError, match="shape='sphere'"):
        local_keypoints("sphere", RADIUS, LENGTH, K, SPACING)


def test_keypoint_term_is_the_weighted_mean_of_the_kernel():
    reward = KeypointReward(RewardConfig(kernel="linear", linear_scale=10.0))
    # linear kernel: -10 d; weights 3 (held object) and 1: (3 * -0.1 + 1 * -0.5) / 4
    assert reward.keypoint_term([0.01, 0.05], [3.0, 1.0]) == pytest.approx(-0.2)
    terms = reward.terms([0.01, 0.05], [3.0, 1.0], True, np.zeros(6), 0.0)
    assert terms["keypoint"] == pytest.approx(-0.2) and terms["success_bonus"] == 10.0


@pytest.mark.parametrize(
    "distances, weights, message",
    [([0.1], [1.0, 1.0], "1 keypoint distances but 2 weights"), ([0.1, 0.2], [0.0, 0.0], "sum to a positive")],
)
def test_bad_keypoint_weights_raise(distances, weights, message):
    with pytest.raises(ValueError, match=message):
        KeypointReward(RewardConfig()).keypoint_term(distances, weights)


def test_alignment_distance_ignores_the_axis_component():
    offsets = np.array([[0.003, 0.004, 0.1], [0.0, 0.0, -0.02]])  # 5 mm and 0 mm across the axis
    assert alignment_distance(offsets) == pytest.approx(0.0025)
