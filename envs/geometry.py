"""Small rotation helpers (quaternions are x, y, z, w like PyBullet).

The per-step ones work on plain Python floats and tuples: for 3-vectors and
quaternions that is several times faster than numpy's per-call overhead,
and the environment step is a hot path.
"""

from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import numpy as np
import pybullet

Quat = Tuple[float, float, float, float]


def quat_multiply(a: Sequence[float], b: Sequence[float]) -> Quat:
    """Hamilton product a * b (apply b, then a)."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return (
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    )


def quat_conjugate(q: Sequence[float]) -> Quat:
    return (-q[0], -q[1], -q[2], q[3])


def quat_from_rotvec(x: float, y: float, z: float) -> Quat:
    """Quaternion of a rotation by |(x, y, z)| radians about (x, y, z)."""
    angle = math.sqrt(x * x + y * y + z * z)
    if angle < 1e-12:
        return (0.0, 0.0, 0.0, 1.0)
    s = math.sin(angle / 2) / angle
    return (x * s, y * s, z * s, math.cos(angle / 2))


def rotation_vector(q: Sequence[float]) -> Tuple[float, float, float]:
    """Axis-angle vector of a unit quaternion, angle in [0, pi] (the shorter way round)."""
    x, y, z, w = q
    if w < 0:
        x, y, z, w = -x, -y, -z, -w
    sin_half = math.sqrt(x * x + y * y + z * z)
    if sin_half < 1e-12:
        return (2.0 * x, 2.0 * y, 2.0 * z)
    scale = 2.0 * math.atan2(sin_half, w) / sin_half
    return (x * scale, y * scale, z * scale)


def quat_angle(a: Sequence[float], b: Sequence[float]) -> float:
    """Angle (radians) of the rotation between two unit quaternions."""
    dot = abs(a[0] * b[0] + a[1] * b[1] + a[2] * b[2] + a[3] * b[3])
    return 2.0 * math.acos(min(1.0, dot))


def quat_slerp(a: Sequence[float], b: Sequence[float], fraction: float) -> Quat:
    """Spherical linear interpolation from a (fraction 0) to b (fraction 1), along the shorter arc."""
    dot = a[0] * b[0] + a[1] * b[1] + a[2] * b[2] + a[3] * b[3]
    if dot < 0:
        b, dot = tuple(-v for v in b), -dot
    if dot > 0.9995:
        q = [x + fraction * (y - x) for x, y in zip(a, b)]
    else:
        theta = math.acos(dot)
        wa, wb = math.sin((1 - fraction) * theta), math.sin(fraction * theta)
        q = [(wa * x + wb * y) / math.sin(theta) for x, y in zip(a, b)]
    norm = math.sqrt(sum(v * v for v in q))
    return tuple(v / norm for v in q)


def yaw_rotate(c: float, s: float, x: float, y: float) -> Tuple[float, float]:
    """Rotate (x, y) by the yaw whose cosine and sine are (c, s)."""
    return c * x - s * y, s * x + c * y


def yaw_rotate_twist(c: float, s: float, twist: Sequence[float]) -> List[float]:
    """Rotate a twist [vx, vy, vz, wx, wy, wz] about z by the yaw whose cosine and sine are (c, s)."""
    vx, vy, vz, wx, wy, wz = twist
    return [*yaw_rotate(c, s, vx, vy), vz, *yaw_rotate(c, s, wx, wy), wz]


def quat_to_matrix(quat) -> np.ndarray:
    """3x3 rotation matrix of a quaternion (PyBullet's pure-math routine, no client involved)."""
    return np.array(pybullet.getMatrixFromQuaternion(quat)).reshape(3, 3)


def euler_to_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """Rotation matrix of extrinsic x-y-z (roll, pitch, yaw) angles, as PyBullet's getQuaternionFromEuler."""
    return quat_to_matrix(pybullet.getQuaternionFromEuler([roll, pitch, yaw]))


def box_penetration(
    center_a: np.ndarray, rot_a: np.ndarray, half_a: np.ndarray, center_b: np.ndarray, rot_b: np.ndarray, half_b
) -> float:
    """How deep two oriented boxes interpenetrate (m); negative when they are apart.

    Separating-axis test over the 15 candidate axes (the 3 face normals of each box and their
    9 cross products): the boxes overlap iff they overlap along every axis, and the smallest
    overlap is the penetration depth (up to the cross-product axes' approximation when they
    are apart). Rotations are 3x3 with the box axes as columns; ``half_*`` are half extents.
    """
    axes_a, axes_b = rot_a.T, rot_b.T  # rows: box axes
    crosses = np.cross(axes_a[:, None], axes_b[None]).reshape(9, 3)
    norms = np.linalg.norm(crosses, axis=1)
    candidates = np.concatenate([axes_a, axes_b, crosses[norms > 1e-9] / norms[norms > 1e-9, None]])
    radius_a = np.abs(candidates @ axes_a.T) @ np.asarray(half_a)
    radius_b = np.abs(candidates @ axes_b.T) @ np.asarray(half_b)
    distance = np.abs(candidates @ (np.asarray(center_b) - np.asarray(center_a)))
    return float((radius_a + radius_b - distance).min())
