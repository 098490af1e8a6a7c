"""Curricula that choose episode start states (reverse curriculum: start near the goal, move outward).

Not implemented yet: ``configs/curriculum/none.yaml`` (a fixed task for the whole run) is the only
option. The environments already accept explicit start states through
``reset(options={"peg_pose": ...})`` and report them with ``get_start_state()``, which is the
interface a scheduler will drive.
"""
