"""A local Ray instance in its own session, so that signals to the trainer's process group spare it.

SLURM, systemd, container runtimes and a terminal's Ctrl-C signal a whole process group. A Ray
instance started by ``ray.init()`` in the trainer runs its servers (GCS, raylet) and its workers in
the trainer's group: they die at once, Ray then ends the trainer too, and the run stops without the
``latest.pt`` it was about to write. So the trainer starts the instance in a separate process,
``python -m agents.ray_head``, in a new session (``start_new_session``), and connects to it:

- the head process starts Ray (``agents.ray_rollout.init_local_ray``), prints its address as one
  JSON line on stdout, and then waits on stdin;
- the trainer holds the other end of that pipe: when it closes it (``LocalRayHead.stop``) or dies in
  any way, even by SIGKILL, the head process reads end-of-file, shuts Ray down and exits, so no Ray
  instance outlives its run.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Optional

START_TIMEOUT_S = 120.0  # for the head process to report its address
STOP_TIMEOUT_S = 30.0  # for it to shut Ray down once asked
EXIT_GRACE_S = 10.0  # for a head process whose stdout closed to be seen as exited


class RayHeadError(RuntimeError):
    """The local Ray instance did not start; the message has what its process printed."""


class LocalRayHead:
    """A local Ray instance with ``num_cpus`` CPUs in a process of its own session (module docstring)."""

    def __init__(self, num_cpus: int, start_timeout: float = START_TIMEOUT_S):
        # stderr goes to a file, not a pipe: nobody reads it after the start, and a full pipe would block.
        self.log = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agents.ray_head", str(num_cpus)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            start_new_session=True,
            text=True,
        )
        try:
            self.address = self._read_address(start_timeout)
        except BaseException:
            self.stop()
            raise

    def _read_address(self, timeout: float) -> str:
        """The address the head process prints once Ray runs; ``RayHeadError`` if it exits or times out first."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            ready = remaining > 0 and select.select([self.process.stdout], [], [], remaining)[0]
            line = self.process.stdout.readline() if ready else ""
            if line.startswith("{"):
                return json.loads(line)["address"]
            if not line:  # timed out, or the process exited before reporting
                exited = self._exited(wait=remaining > 0)
                self.log.seek(0)
                last = self.log.read().strip().splitlines()[-1:] or ["(it printed nothing)"]
                self.stop()
                when = "its process exited" if exited else f"no address within {timeout:g} s"
                raise RayHeadError(f"the local Ray instance did not start ({when}): {last[0]}")

    def _exited(self, wait: bool) -> bool:
        """Whether the head process has exited; with ``wait`` (its stdout closed) give it a moment."""
        try:
            self.process.wait(timeout=EXIT_GRACE_S if wait else 0)
        except subprocess.TimeoutExpired:
            return False
        return True

    def stop(self) -> None:
        """Shut the instance down (closing the pipe asks the head process to), killing it if it hangs."""
        if self.process.poll() is None:
            try:
                self.process.stdin.close()
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except (OSError, subprocess.TimeoutExpired):
                os.killpg(self.process.pid, signal.SIGKILL)  # its session: the head and every Ray process
                self.process.wait()
        self.process.stdout.close()
        self.log.close()


def main(argv: Optional[list] = None) -> None:
    import ray

    from agents.ray_rollout import init_local_ray

    num_cpus = int((argv or sys.argv[1:])[0])
    try:
        init_local_ray(num_cpus)
    except BaseException:
        # Exit now, and take down what ray.init may have started before it failed: those servers
        # hold this process's stdout open, so the trainer would wait for an address until its timeout.
        traceback.print_exc()
        sys.stderr.flush()
        if os.getpgid(0) == os.getpid():  # the leader of our own session's group (LocalRayHead)
            os.killpg(os.getpid(), signal.SIGKILL)
        os._exit(1)
    print(json.dumps({"address": ray.get_runtime_context().gcs_address}), flush=True)
    sys.stdin.read()  # returns at end-of-file: the trainer closed the pipe or died
    ray.shutdown()


if __name__ == "__main__":
    main()
