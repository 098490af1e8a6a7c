"""Robots that hold and move an object (a peg, a box to insert).

Both robots expose the same interface, so tasks never know which one runs:

- ``build(held)``: create the robot and the object it holds (``held_body``, ``held_link``);
- ``reset(pos, quat)``: teleport so the held object is at the given pose, at rest;
- ``set_held_velocity(linear, angular)``: after a reset, give the held object a velocity (world
  frame), so a start state taken mid-motion looks and moves as it did;
- ``command(pos, quat, current=None)``: target pose of the held object for the next physics
  steps (``current``: its measured pose, if the caller already has it);
- ``held_pose()`` / ``held_state()``: the measured state of the held object, which is
  the end effector we control.

The held object's frame sits at its centre with +z along its long axis, pointing
away from the tip. Each robot states its default physics time step and
substeps per action (``SimConfig`` overrides them).
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import pybullet
import pybullet_data

from envs.geometry import quat_conjugate, quat_multiply, rotation_vector
from envs.sim import Simulator

Pose = Tuple[Sequence[float], Sequence[float]]  # (xyz, quaternion xyzw)
HELD_COLOR = [0.85, 0.45, 0.1, 1.0]


@dataclass(frozen=True)
class HeldObjectSpec:
    shape: str  # "cylinder" or "box"
    radius: float  # cylinder radius or half side of the square prism
    length: float
    mass: float = 0.1


class FloatingRobot:
    """The held object alone, pulled to its target pose by a fixed constraint (no arm).

    Cheap to simulate, so it is the robot for fast experiments.
    """

    name = "floating"
    # Contacts between the constrained object and a rim need a short physics step: at 10 ms
    # the rim twists a peg by tens of degrees; at 2.5 ms it is held (tests/test_peg_insertion_env.py).
    default_time_step = 1.0 / 400.0
    default_substeps = 10
    max_force = 200.0  # N: the constraint can push the object this hard into contact

    def __init__(self, sim: Simulator):
        self.sim = sim
        self.held_body, self.held_link = -1, -1
        self.constraint_id = -1
        self._target: Pose = ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0))

    def build(self, held: HeldObjectSpec) -> None:
        client = self.sim.client
        if held.shape == "cylinder":
            collision = client.createCollisionShape(pybullet.GEOM_CYLINDER, radius=held.radius, height=held.length)
            visual = client.createVisualShape(
                pybullet.GEOM_CYLINDER, radius=held.radius, length=held.length, rgbaColor=HELD_COLOR
            )
        else:
            extents = [held.radius, held.radius, held.length / 2]
            collision = client.createCollisionShape(pybullet.GEOM_BOX, halfExtents=extents)
            visual = client.createVisualShape(pybullet.GEOM_BOX, halfExtents=extents, rgbaColor=HELD_COLOR)
        self.held_body = self.sim.add_body(
            "held_object",
            client.createMultiBody(
                baseMass=held.mass,
                baseCollisionShapeIndex=collision,
                baseVisualShapeIndex=visual,
                basePosition=[0.5, 0.0, 0.3],
            ),
        )
        self.constraint_id = client.createConstraint(
            self.held_body, -1, -1, -1, pybullet.JOINT_FIXED, [0, 0, 0], [0, 0, 0], [0.5, 0.0, 0.3]
        )

    def reset(self, pos: Sequence[float], quat: Sequence[float]) -> None:
        self.sim.client.resetBasePositionAndOrientation(self.held_body, pos, quat)
        self.sim.client.resetBaseVelocity(self.held_body, [0, 0, 0], [0, 0, 0])
        self.command(pos, quat)

    def set_held_velocity(self, linear: Sequence[float], angular: Sequence[float]) -> None:
        self.sim.client.resetBaseVelocity(self.held_body, list(linear), list(angular))

    def command(self, pos: Sequence[float], quat: Sequence[float], current: Optional[Pose] = None) -> None:
        self._target = (tuple(pos), tuple(quat))
        pybullet.changeConstraint(
            self.constraint_id,
            jointChildPivot=pos,
            jointChildFrameOrientation=quat,
            maxForce=self.max_force,
            physicsClientId=self.sim.id,
        )

    def held_pose(self) -> Pose:
        return pybullet.getBasePositionAndOrientation(self.held_body, physicsClientId=self.sim.id)

    def held_state(self):
        """(position, quaternion, linear velocity, angular velocity) of the held object."""
        client_id = self.sim.id
        pos, quat = pybullet.getBasePositionAndOrientation(self.held_body, physicsClientId=client_id)
        linvel, angvel = pybullet.getBaseVelocity(self.held_body, physicsClientId=client_id)
        return pos, quat, linvel, angvel

    def get_command_state(self):
        return self._target

    def set_command_state(self, state) -> None:
        self.command(*state)


class PandaRobot:
    """Franka Panda from ``pybullet_data`` with the held object as a rigid link of its hand.

    The held object is written into a copy of ``panda.urdf`` as a link fixed below the
    grasp point, and the finger joints become fixed: the object is held perfectly
    rigidly without a contact-based grasp or an extra constraint, and the
    multibody has only the 7 arm DoFs. Only the held object collides with the world.

    The arm tracks the commanded pose of the held object through inverse kinematics: at reset
    an iterated null-space solve whose forward-kinematics residual is checked
    (an unreachable start raises), during an episode one damped-least-squares
    step per action from the measured joints (see ``differential_ik``). Joint
    targets are clipped to the joint limits before they reach the motors.
    """

    name = "panda"
    default_time_step = 1.0 / 500.0
    default_substeps = 20
    arm_joints = list(range(7))
    joint_forces = [87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0]
    rest_pose = [0.0, 0.2, 0.0, -2.2, 0.0, 2.4, 0.785]
    ik_damping = 0.01  # lambda of the damped least squares step
    reset_tolerance = 2e-3  # metres: a start pose the arm cannot reach closer than this is an error
    reset_converged = 1e-5  # metres: stop refining the reset pose below this residual
    reset_refinements = 5  # at most this many Newton steps after the null-space solve
    grip_inset = 0.015  # metres of the held object's top end inside the hand

    def __init__(self, sim: Simulator):
        self.sim = sim
        self.held_body, self.held_link = -1, -1
        self._joint_targets: List[float] = list(self.rest_pose)
        self._lower: List[float] = []
        self._upper: List[float] = []
        self.last_residual = 0.0

    def build(self, held: HeldObjectSpec) -> None:
        client = self.sim.client
        path = write_panda_holding_urdf(held, min(self.grip_inset, held.length / 4))
        self.held_body = self.sim.add_body(
            "panda",
            client.loadURDF(
                path,
                useFixedBase=True,
                flags=pybullet.URDF_ENABLE_CACHED_GRAPHICS_SHAPES | pybullet.URDF_USE_IMPLICIT_CYLINDER,
            ),
        )
        names = {
            client.getJointInfo(self.held_body, j)[12].decode(): j for j in range(client.getNumJoints(self.held_body))
        }
        self.held_link = names["held_object"]
        for link in range(-1, client.getNumJoints(self.held_body)):
            if link != self.held_link:
                client.setCollisionFilterGroupMask(self.held_body, link, 0, 0)
        infos = [client.getJointInfo(self.held_body, j) for j in self.arm_joints]
        self._lower = [info[8] for info in infos]
        self._upper = [info[9] for info in infos]
        self._num_movable = sum(
            client.getJointInfo(self.held_body, j)[2] != pybullet.JOINT_FIXED
            for j in range(client.getNumJoints(self.held_body))
        )
        self._zeros = [0.0] * self._num_movable
        self._damping_matrix = self.ik_damping**2 * np.eye(6)
        self._origin = [0.0, 0.0, 0.0]

    def solve_ik(self, pos: Sequence[float], quat: Sequence[float], iterations: int = 50) -> List[float]:
        """Joint angles placing the held object at (pos, quat) by pybullet's null-space IK, clipped to the joint limits.

        Used at reset, where the arm starts from its rest pose far from the target;
        pybullet's damped steps converge slowly, so this only gets within ~1 mm.
        """
        solution = pybullet.calculateInverseKinematics(
            self.held_body,
            self.held_link,
            pos,
            quat,
            lowerLimits=self._lower,
            upperLimits=self._upper,
            jointRanges=[high - low for low, high in zip(self._lower, self._upper)],
            restPoses=self.rest_pose,
            maxNumIterations=iterations,
            residualThreshold=1e-6,
            physicsClientId=self.sim.id,
        )
        return np.clip(solution[:7], self._lower, self._upper).tolist()

    def differential_ik(
        self, pos: Sequence[float], quat: Sequence[float], current: Optional[Pose] = None
    ) -> List[float]:
        """One damped-least-squares step from the measured joints toward the held object's target pose.

        dq = J^T (J J^T + lambda^2 I)^-1 e   (Wampler 1986; Buss 2004, eq. 11)
        with e the 6-D pose error of the held object. Actions move the target by about a
        centimetre at most, so one linearisation is accurate to a fraction of a
        millimetre, and the next action re-linearises at the new measured joints:
        the IK iteration continues across control steps. ``last_residual`` is
        the position error (m) this step started from.
        """
        client_id = self.sim.id
        joints = [s[0] for s in pybullet.getJointStates(self.held_body, self.arm_joints, physicsClientId=client_id)]
        (x, y, z), current_quat = current if current is not None else self.held_pose()
        error = [
            pos[0] - x,
            pos[1] - y,
            pos[2] - z,
            *rotation_vector(quat_multiply(quat, quat_conjugate(current_quat))),
        ]
        self.last_residual = math.sqrt(error[0] ** 2 + error[1] ** 2 + error[2] ** 2)
        linear, angular = pybullet.calculateJacobian(
            self.held_body, self.held_link, self._origin, joints, self._zeros, self._zeros, physicsClientId=client_id
        )
        jacobian = np.array((*linear, *angular))
        step = jacobian.T @ np.linalg.solve(jacobian @ jacobian.T + self._damping_matrix, error)
        return [min(max(q + dq, lo), hi) for q, dq, lo, hi in zip(joints, step.tolist(), self._lower, self._upper)]

    def reset(self, pos: Sequence[float], quat: Sequence[float]) -> None:
        """Teleport the arm so the held object sits at (pos, quat); raise if the arm cannot reach it.

        A null-space solve from the rest pose finds the arm configuration (within
        about a millimetre); damped-least-squares Newton steps then refine it until
        the forward-kinematics residual is below ``reset_converged``.
        """
        self._set_joints(self.rest_pose)
        joints = self.solve_ik(pos, quat, iterations=50)
        self._set_joints(joints)
        for _ in range(self.reset_refinements):
            current = self.held_pose()
            if math.dist(current[0], pos) < self.reset_converged:
                break
            joints = self.differential_ik(pos, quat, current)
            self._set_joints(joints)
        residual = math.dist(self.held_pose()[0], pos)
        if residual > self.reset_tolerance:
            raise ValueError(
                f"the Panda cannot reach the requested pose of the held object {list(pos)} "
                f"(inverse-kinematics residual {residual * 1000:.1f} mm)"
            )
        self._send_joint_targets(joints)

    def _set_joints(self, joints: Sequence[float], velocities: Optional[Sequence[float]] = None) -> None:
        for joint, angle, velocity in zip(self.arm_joints, joints, velocities or [0.0] * len(self.arm_joints)):
            self.sim.client.resetJointState(self.held_body, joint, angle, velocity)

    def set_held_velocity(self, linear: Sequence[float], angular: Sequence[float]) -> None:
        """Joint velocities giving the held object this twist: qdot = J^+ [v; w] (the minimum-norm joint
        velocities; the 7-DoF arm's Jacobian has rank 6 away from singularities, so the twist is exact)."""
        client_id = self.sim.id
        joints = [s[0] for s in pybullet.getJointStates(self.held_body, self.arm_joints, physicsClientId=client_id)]
        jacobian_linear, jacobian_angular = pybullet.calculateJacobian(
            self.held_body, self.held_link, self._origin, joints, self._zeros, self._zeros, physicsClientId=client_id
        )
        jacobian = np.array((*jacobian_linear, *jacobian_angular))
        velocities = np.linalg.pinv(jacobian) @ np.array([*linear, *angular], dtype=np.float64)
        self._set_joints(joints, velocities.tolist())

    def command(self, pos: Sequence[float], quat: Sequence[float], current: Optional[Pose] = None) -> None:
        self._send_joint_targets(self.differential_ik(pos, quat, current))

    def _send_joint_targets(self, joints: List[float]) -> None:
        self._joint_targets = joints
        pybullet.setJointMotorControlArray(
            self.held_body,
            self.arm_joints,
            pybullet.POSITION_CONTROL,
            targetPositions=joints,
            forces=self.joint_forces,
            physicsClientId=self.sim.id,
        )

    def held_pose(self) -> Pose:
        state = pybullet.getLinkState(
            self.held_body, self.held_link, computeForwardKinematics=1, physicsClientId=self.sim.id
        )
        return state[4], state[5]

    def held_state(self):
        """(position, quaternion, linear velocity, angular velocity) of the held, in one query."""
        state = pybullet.getLinkState(
            self.held_body,
            self.held_link,
            computeLinkVelocity=1,
            computeForwardKinematics=1,
            physicsClientId=self.sim.id,
        )
        return state[4], state[5], state[6], state[7]

    def get_command_state(self):
        return list(self._joint_targets)

    def set_command_state(self, state) -> None:
        self._send_joint_targets(list(state))


def write_panda_holding_urdf(held: HeldObjectSpec, grip_inset: float) -> str:
    """Write (once per object geometry) a copy of pybullet_data's panda.urdf holding ``held``; return its path."""
    key = f"{held.shape}_{held.radius:.6f}_{held.length:.6f}_{held.mass:.4f}_{grip_inset:.4f}"
    folder = os.path.join(tempfile.gettempdir(), "graph_insertion_urdf")
    path = os.path.join(folder, f"panda_holding_{key}.urdf")
    if os.path.exists(path):
        return path
    data = os.path.join(pybullet_data.getDataPath(), "franka_panda")
    with open(os.path.join(data, "panda.urdf")) as f:
        urdf = f.read()
    urdf = urdf.replace("package://meshes/", os.path.join(data, "meshes") + "/")
    # Fingers become fixed, opened to the held object's width (they are only visual).
    for name, side in (("panda_finger_joint1", 1), ("panda_finger_joint2", -1)):
        start = urdf.index(f'<joint name="{name}"')
        end = urdf.index("</joint>", start)
        block = urdf[start:end]
        block = block.replace('type="prismatic"', 'type="fixed"')
        block = block.replace('xyz="0 0 0.0584"', f'xyz="0 {side * held.radius:.6f} 0.0584"')
        block = block.replace('<mimic joint="panda_finger_joint1"/>', "")
        urdf = urdf[:start] + block + urdf[end:]
    if held.shape == "cylinder":
        geometry = f'<cylinder radius="{held.radius:.6f}" length="{held.length:.6f}"/>'
    else:
        geometry = f'<box size="{2 * held.radius:.6f} {2 * held.radius:.6f} {held.length:.6f}"/>'
    inertia = held.mass * (3 * held.radius**2 + held.length**2) / 12
    held_xml = f"""
  <link name="held_object">
    <inertial><origin xyz="0 0 0"/><mass value="{held.mass}"/>
      <inertia ixx="{inertia:.8f}" ixy="0" ixz="0" iyy="{inertia:.8f}" iyz="0" izz="{inertia:.8f}"/></inertial>
    <visual><geometry>{geometry}</geometry>
      <material name="held_object"><color rgba="{" ".join(map(str, HELD_COLOR))}"/></material></visual>
    <collision><geometry>{geometry}</geometry></collision>
  </link>
  <joint name="held_object_joint" type="fixed">
    <parent link="panda_grasptarget"/>
    <child link="held_object"/>
    <origin rpy="3.14159265359 0 0" xyz="0 0 {held.length / 2 - grip_inset:.6f}"/>
  </joint>
</robot>"""
    urdf = urdf[: urdf.rindex("</robot>")] + held_xml
    os.makedirs(folder, exist_ok=True)
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as f:
        f.write(urdf)
    os.replace(temporary, path)  # atomic: parallel workers may write the same file
    return path


ROBOT_CLASSES = {"floating": FloatingRobot, "panda": PandaRobot}


def make_robot(name: str, sim: Simulator):
    try:
        return ROBOT_CLASSES[name](sim)
    except KeyError:
        raise ValueError(f"unknown robot {name!r}; choose one of {sorted(ROBOT_CLASSES)}") from None
