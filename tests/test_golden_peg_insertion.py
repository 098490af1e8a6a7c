"""Peg insertion reproduces its recorded golden trajectories (tests/golden_peg.py)."""

import numpy as np
import pytest
from golden_peg import CASES, load, run_case


@pytest.mark.parametrize("case", sorted(CASES))
def test_reproduces_golden_trajectory(case):
    golden, replay = load(case), run_case(CASES[case])
    assert sorted(replay) == sorted(golden), "the recorded columns (observation keys, info entries) changed"
    for key, expected in golden.items():
        np.testing.assert_allclose(replay[key], expected, rtol=0, atol=1e-6, err_msg=f"{case}: {key}")


def test_golden_episodes_reach_contact_and_success():
    """The recording exercises what a refactor could break: contacts, success and termination."""
    for case in CASES:
        golden = load(case)
        assert golden["info.is_success"].any(), case
        assert golden["terminated"].any(), case
        assert (golden["info.contact_force"] > 0).any(), case
