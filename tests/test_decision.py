"""The rate decision: the exact-averaging companion separates a transient from the rate, on planted tables."""
from __future__ import annotations

import numpy as np
import pytest

from deprl_theory.experiments.decision import companion_needed, decide, fit_metric, rate_decision
from deprl_theory.experiments.transient import decompose_transient, negligible_tol
from deprl_theory.inference import Verdict

NS, KS = (4, 8, 16, 32), (500, 1000, 2000, 4000)
CELLS = [(n, k) for n in NS for k in KS]


def planted(s=1.0, b=0.0, *, seeds=24, sd=0.01, seed=0, excess_exponent=-1.0):
    """Exact averaging N^(-s/2) K^(-1/2) and a graph with b N^(3/2 + ...) excess; independent log-normal scatter."""
    rng = np.random.default_rng(seed)
    comp, graph = {}, {}
    for n, k in CELLS:
        lead = n ** (-s / 2) * k ** -0.5
        comp[(n, k)] = lead * np.exp(sd * rng.standard_normal(seeds))
        excess = b * n * (k / 500) ** excess_exponent / 500
        graph[(n, k)] = (lead + excess) * np.exp(sd * rng.standard_normal(seeds))
    return graph, comp


def test_a_transient_that_dies_as_1_over_K_is_separated_from_the_rate():
    graph, comp = planted(b=0.03)
    d = decompose_transient(graph, comp, leading_e_K=-0.5)
    assert d.rate_is_companion is True
    law = d.per_n[32]
    assert law.state == "transient" and law.exponent == pytest.approx(-1.0, abs=0.1)
    assert law.exponent_ci[1] < -0.6 and law.ratio[0] > law.ratio[-1] > 1
    assert law.K0_how in ("measured", "at or before the grid", "extrapolated") and law.K0 > 0


def test_an_excess_that_decays_like_the_leading_term_persists_and_the_grid_is_the_rate():
    graph, comp = planted(b=0.03, excess_exponent=-0.5)
    d = decompose_transient(graph, comp, leading_e_K=-0.5)
    assert d.rate_is_companion is False and d.per_n[32].state == "persistent"


def test_no_excess_opens_no_gate():
    graph, comp = planted(b=0.0, seed=3)
    d = decompose_transient(graph, comp, leading_e_K=-0.5)
    assert d.rate_is_companion is None  # neither reading is separated: only an agreed verdict decides
    assert {law.state for law in d.per_n.values()} <= {"negligible", "indistinct"}


def test_the_negligible_band_is_what_cannot_move_s_by_half_the_margin():
    tol = negligible_tol(NS, 0.1)
    # a factor 1 + tol spread from N = 4 to 32 moves e_N by m/4, so s by m/2 at e_K = -1/2
    assert np.log(1 + tol) / np.log(32 / 4) == pytest.approx(0.1 / 4)


def _decide(graph, comp, **kw):
    return decide("G", graph, margin=0.1, level=0.95, transient_tol=0.15, companion_table=comp, **kw)


def test_the_ring_shape_is_linear_after_transient_with_the_grid_s_beside_it():
    graph, comp = planted(b=0.03)
    d = _decide(graph, comp)
    assert d.grid.verdict.word == "sublinear"  # what the grid alone says: the failure
    assert d.word == "linear after transient"
    assert "s on this grid" in d.verdict.reason and d.decomposition.rate_is_companion


def test_a_genuinely_sublinear_rate_stays_sublinear_with_a_transient_on_top():
    graph, comp = planted(s=0.6, b=0.03)
    d = _decide(graph, comp)
    assert d.word == "sublinear", d.verdict.reason


def test_local_only_training_cannot_be_rescued_by_the_companion():
    # no mixing: the companion does not run, and a flat metric is no convergence
    rng = np.random.default_rng(1)
    flat = {key: np.exp(0.01 * rng.standard_normal(8)) for key in CELLS}
    d = decide("G", flat, margin=0.1, level=0.95, transient_tol=0.15, mixes=False, companion_table=flat)
    assert d.word == "none" and d.companion is None


@pytest.mark.parametrize("rule,mixes,word,runs", [
    ("auto", True, "sublinear", True), ("auto", True, "linear", False), ("auto", False, "sublinear", False),
    ("always", True, "linear", True), ("never", True, "sublinear", False)])
def test_when_the_companion_runs(rule, mixes, word, runs):
    assert companion_needed(rule, mixes, Verdict(word, "")) is runs


def test_the_companion_is_only_fetched_when_needed():
    graph, comp = planted(b=0.0, seed=2)
    calls = []

    def fetch():
        calls.append(1)
        return comp

    d = _decide(graph, fetch)
    assert d.word == "linear" and calls == []  # linear on the grid: nothing to separate


def test_rate_decision_without_a_companion_is_the_grid_verdict():
    graph, _ = planted(b=0.03)
    keys = sorted(graph)
    grid = fit_metric("G", graph, keys, keys, margin=0.1, level=0.95)
    d = rate_decision(grid, graph, None, margin=0.1, level=0.95, transient_tol=0.15)
    assert d.verdict is grid.verdict and d.companion is None


def test_a_noisy_zero_excess_is_indistinct_and_leaves_the_grid_verdict_alone():
    # too noisy to be called negligible, but no excess is shown: the grid's own exponent stands
    graph, comp = planted(b=0.0, sd=0.05, seeds=8, seed=7)
    d = decompose_transient(graph, comp, leading_e_K=-0.5)
    states = {law.state for law in d.per_n.values()}
    assert "indistinct" in states and states <= {"negligible", "indistinct"}
    assert d.rate_is_companion is None


def test_when_nothing_separates_the_readings_only_an_agreed_verdict_decides():
    from deprl_theory.inference import Verdict

    graph, comp = planted(b=0.0, sd=0.05, seeds=8, seed=7)
    keys = sorted(graph)
    grid = fit_metric("G", graph, keys, keys, margin=0.1, level=0.95)
    # pretend the grid alone had said sublinear: exact averaging does not agree, nothing separates them
    said = grid.__class__(grid.metric, grid.fit, Verdict("sublinear", "planted", True, True, margin=0.1))
    d = rate_decision(said, graph, comp, margin=0.1, level=0.95, transient_tol=0.15)
    assert d.companion.verdict.word != "sublinear" and d.word == "inconclusive"
