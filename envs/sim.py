"""Simulator layer: one PyBullet client per environment instance.

Everything that talks to the physics engine about the *world* (time step,
solver, bodies, state snapshots, cameras) lives here; robots and tasks only
ask this object for a client and for bodies by name. Using a ``BulletClient``
instead of pybullet's module-global state lets many environments live in one
process (and in vector-env subprocesses) without stepping on each other.
"""

from __future__ import annotations

import contextlib
import os
import pkgutil
import sys
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import pybullet
import pybullet_data
from pybullet_utils.bullet_client import BulletClient

from envs.config import SimConfig


@dataclass
class Camera:
    """A look-at camera: target point, distance, yaw/pitch in degrees."""

    target: Sequence[float] = (0.5, 0.0, 0.05)
    distance: float = 0.45
    yaw: float = 50.0
    pitch: float = -30.0
    fov: float = 50.0


@contextlib.contextmanager
def _silenced_stdout():
    """Point file descriptor 1 at /dev/null for the duration (C code ignores ``sys.stdout``)."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):  # no real stdout (e.g. captured by a test runner): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


class Simulator:
    """Owns one physics client, the named bodies in it and its state snapshots."""

    def __init__(self, config: SimConfig, time_step: float, substeps: int, gui: bool = False):
        self.config = config
        self.time_step = time_step
        self.substeps = substeps
        with _silenced_stdout():  # the engine prints "argv[0]=" on every connect, once per env and worker
            self.client = BulletClient(connection_mode=pybullet.GUI if gui else pybullet.DIRECT)
        self.client.setAdditionalSearchPath(pybullet_data.getDataPath())
        self.id = self.client._client  # physics client id, for hot paths that call pybullet directly
        self._bodies: Dict[str, int] = {}
        self._substep_hook: Optional[Callable[[], None]] = None
        self._hook_every = 1
        self._hook_count = 0  # engine steps since the hook last ran
        self._configure_engine()
        self._egl_plugin: Optional[int] = None
        if config.renderer == "egl":
            self._load_egl()

    def _configure_engine(self) -> None:
        optional = {}
        if self.config.solver_residual_threshold is not None:  # None: Bullet's own default
            optional["solverResidualThreshold"] = self.config.solver_residual_threshold
        self.client.setPhysicsEngineParameter(
            fixedTimeStep=self.time_step,
            numSolverIterations=self.config.solver_iterations,
            numSubSteps=0,
            deterministicOverlappingPairs=1,
            **optional,
        )
        self.client.setGravity(0.0, 0.0, -9.81)

    def clear(self) -> None:
        """Remove every body (and saved state) and start an empty world with the same settings."""
        self.client.resetSimulation()
        self._bodies.clear()
        self._configure_engine()

    # ------------------------------------------------------------------ bodies
    def add_body(self, name: str, body_id: int) -> int:
        if name in self._bodies:
            raise ValueError(f"a body named {name!r} already exists")
        self._bodies[name] = body_id
        return body_id

    def remove_body(self, name: str) -> None:
        self.client.removeBody(self.body(name))
        del self._bodies[name]

    def body(self, name: str) -> int:
        try:
            return self._bodies[name]
        except KeyError:
            raise KeyError(f"no body named {name!r}; bodies are {sorted(self._bodies)}") from None

    def set_contact_properties(self, body_id: int, link: int = -1, lateral_friction: Optional[float] = None) -> None:
        """Apply the configured collision margin and contact stiffness/damping to one body link."""
        kwargs = {"collisionMargin": self.config.collision_margin}
        if self.config.contact_stiffness is not None:
            kwargs["contactStiffness"] = self.config.contact_stiffness
            kwargs["contactDamping"] = self.config.contact_damping
        if lateral_friction is not None:
            kwargs["lateralFriction"] = lateral_friction
        self.client.changeDynamics(body_id, link, **kwargs)

    # ------------------------------------------------------------------ stepping
    def step(self) -> None:
        """Advance the physics by one action period (``substeps`` engine steps)."""
        step, client_id = pybullet.stepSimulation, self.id
        if self._substep_hook is None:
            for _ in range(self.substeps):
                step(physicsClientId=client_id)
            return
        for _ in range(self.substeps):
            step(physicsClientId=client_id)
            self._hook_count += 1
            if self._hook_count == self._hook_every:
                self._hook_count = 0
                self._substep_hook()

    def set_substep_hook(self, hook: Optional[Callable[[], None]], every: int = 1) -> None:
        """Call ``hook()`` after every ``every``-th engine step inside ``step`` (None removes it).

        This is how videos get frames between actions. A hook must only read the world
        (rendering does), so the physics is the same with or without one. The count
        restarts now and at ``restart_hook_count``.
        """
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an integer >= 1, got {every!r}")
        self._substep_hook, self._hook_every = hook, every
        self.restart_hook_count()

    def restart_hook_count(self) -> None:
        """Count engine steps for the hook from now (e.g. from an episode's start)."""
        self._hook_count = 0

    # ------------------------------------------------------------------ state
    def save_state(self) -> int:
        """Snapshot of all bodies' poses, velocities and contacts (in memory)."""
        return self.client.saveState()

    def restore_state(self, state_id: int) -> None:
        self.client.restoreState(stateId=state_id)

    def remove_state(self, state_id: int) -> None:
        self.client.removeState(state_id)

    # ------------------------------------------------------------------ rendering
    def render(self, camera: Camera) -> np.ndarray:
        """RGB image (H, W, 3) uint8 from a virtual camera; works headless."""
        width, height = self.config.image_width, self.config.image_height
        view = self.client.computeViewMatrixFromYawPitchRoll(
            cameraTargetPosition=list(camera.target),
            distance=camera.distance,
            yaw=camera.yaw,
            pitch=camera.pitch,
            roll=0.0,
            upAxisIndex=2,
        )
        proj = self.client.computeProjectionMatrixFOV(fov=camera.fov, aspect=width / height, nearVal=0.01, farVal=5.0)
        renderer = pybullet.ER_BULLET_HARDWARE_OPENGL if self._egl_plugin is not None else pybullet.ER_TINY_RENDERER
        _, _, rgba, _, _ = self.client.getCameraImage(width, height, view, proj, renderer=renderer)
        return np.asarray(rgba, dtype=np.uint8).reshape(height, width, 4)[:, :, :3].copy()

    def _load_egl(self) -> None:
        egl = pkgutil.get_loader("eglRenderer")
        if egl is None:
            raise RuntimeError(
                "sim.renderer='egl' but pybullet's eglRenderer plugin is not installed; use sim.renderer='tiny'"
            )
        plugin = self.client.loadPlugin(egl.get_filename(), "_eglRendererPlugin")
        if plugin < 0:
            raise RuntimeError(
                "sim.renderer='egl' but the EGL plugin failed to load on this machine "
                "(no EGL device?); use sim.renderer='tiny'"
            )
        self._egl_plugin = plugin

    def close(self) -> None:
        if self.client is not None:
            if self._egl_plugin is not None:
                self.client.unloadPlugin(self._egl_plugin)
            self.client.disconnect()
            self.client = None
