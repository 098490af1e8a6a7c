"""Which checkpoint is best (RunState.improves with episode_metric's tie-breaker), and its round trip."""

from agents.evaluation import episode_metric
from agents.run_state import RunState


def test_a_higher_success_rate_or_an_equal_one_with_a_higher_return_is_better():
    state = RunState()
    assert state.improves(episode_metric([-5.0, -3.0], [0.0, 1.0]))  # 0.5
    assert state.improves(episode_metric([-2.0, -2.0], [1.0, 1.0]))  # 1.0
    # Every episode succeeds from here on: the return (sooner success) still decides.
    assert state.improves(episode_metric([-1.0, -1.0], [1.0, 1.0]))
    assert not state.improves(episode_metric([-1.5, -1.5], [1.0, 1.0]))
    assert not state.improves(episode_metric([-1.0, -1.0], [1.0, 1.0]))  # an exact tie keeps the old best
    assert not state.improves(episode_metric([0.0, 0.0], [1.0, 0.0]))  # a higher return never beats success
    assert (state.best_metric_name, state.best_metric, state.best_tie_breaker) == ("success_rate", 1.0, -1.0)


def test_without_success_reports_a_higher_return_is_better_and_ties_keep_the_best():
    state = RunState()
    assert state.improves(episode_metric([-3.0], []))
    assert not state.improves(episode_metric([-3.0], []))
    assert state.improves(episode_metric([-2.0], []))
    assert state.improves(episode_metric([-9.0], [0.0]))  # the env starts reporting success: a new scale
    assert state.best_metric_name == "success_rate"
    assert episode_metric([], []) is None and not state.improves(None)


def test_the_tie_breaker_survives_a_checkpoint():
    state = RunState()
    state.improves(episode_metric([-1.0], [1.0]))
    checkpoint = {"global_step": 0, "updates": 0, "best_metric": state.best_metric, "trainer": state.extra([0], None)}
    restored = RunState.from_checkpoint(checkpoint, window=10)
    assert restored.best_tie_breaker == -1.0
    assert not restored.improves(episode_metric([-2.0], [1.0])) and restored.improves(episode_metric([-0.5], [1.0]))
