"""Rotation helpers against PyBullet's own math and closed forms."""

import math

import numpy as np
import pybullet
import pytest

from envs.geometry import (
    quat_angle,
    quat_conjugate,
    quat_from_rotvec,
    quat_multiply,
    quat_slerp,
    quat_to_matrix,
    rotation_vector,
    yaw_rotate,
    yaw_rotate_twist,
)

RNG = np.random.default_rng(0)


def random_quat():
    q = RNG.normal(size=4)
    return tuple(q / np.linalg.norm(q))


def test_quat_multiply_matches_pybullet():
    for _ in range(20):
        a, b = random_quat(), random_quat()
        expected = pybullet.multiplyTransforms([0, 0, 0], a, [0, 0, 0], b)[1]
        ours = quat_multiply(a, b)
        assert np.allclose(ours, expected, atol=1e-6) or np.allclose(ours, -np.array(expected), atol=1e-6)


def test_rotvec_round_trip_and_angle():
    for _ in range(20):
        rotvec = RNG.uniform(-1.5, 1.5, 3)
        q = quat_from_rotvec(*rotvec)
        np.testing.assert_allclose(rotation_vector(q), rotvec, atol=1e-9)
        assert quat_angle(q, (0, 0, 0, 1)) == pytest.approx(np.linalg.norm(rotvec))
    axis, angle = pybullet.getAxisAngleFromQuaternion(quat_from_rotvec(0.0, 0.0, 0.3))
    assert angle == pytest.approx(0.3) and np.allclose(axis, [0, 0, 1])


def test_conjugate_inverts():
    q = random_quat()
    np.testing.assert_allclose(quat_multiply(q, quat_conjugate(q)), (0, 0, 0, 1), atol=1e-12)


def test_slerp_endpoints_and_midpoint():
    a, b = (0, 0, 0, 1), quat_from_rotvec(0, 0, 1.0)
    np.testing.assert_allclose(quat_slerp(a, b, 0.0), a, atol=1e-12)
    np.testing.assert_allclose(quat_slerp(a, b, 1.0), b, atol=1e-12)
    assert quat_angle(quat_slerp(a, b, 0.5), a) == pytest.approx(0.5)


def test_yaw_rotate_matches_matrix():
    yaw = 0.7
    c, s = math.cos(yaw), math.sin(yaw)
    matrix = quat_to_matrix(pybullet.getQuaternionFromEuler([0, 0, yaw]))
    np.testing.assert_allclose(yaw_rotate(c, s, 0.3, -0.2), (matrix @ [0.3, -0.2, 0])[:2], atol=1e-12)


def test_yaw_rotate_twist_rotates_both_halves_about_z_by_hand():
    # A quarter turn: x -> y, y -> -x; the z components stay.
    assert yaw_rotate_twist(0.0, 1.0, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]) == [-2.0, 1.0, 3.0, -5.0, 4.0, 6.0]
