"""Balanced heads remove the instance scatter that iid heads put on top of the N effect."""
import json

import numpy as np
import pytest

from deprl_theory.problems import make_problem, whiten


def test_balanced_heads_have_exact_task_diversity_for_every_N():
    for n in (3, 4, 32):
        p = make_problem("linear", n, rank=3, heads="balanced", heterogeneity=0.7, n_seeds=4, seed=1)
        gram = np.einsum("snr,snq->srq", p.heads_star, p.heads_star) / n
        np.testing.assert_allclose(gram, np.broadcast_to(0.49 * np.eye(3), gram.shape), atol=1e-12)
    iid = make_problem("linear", 4, rank=3, heads="iid", n_seeds=16, seed=1).heads_star
    smallest = np.linalg.eigvalsh(np.einsum("snr,snq->srq", iid, iid) / 4)[:, 0]
    assert smallest.min() < 0.2  # iid heads: some instances have almost no diversity in one direction


def test_balanced_heads_keep_clusters_and_need_enough_draws():
    p = make_problem("linear", 9, rank=3, heads="balanced", clusters=3, cluster_spread=0.0, n_seeds=1, seed=0)
    h = p.heads_star[0]
    np.testing.assert_allclose(h[0], h[3]) and np.testing.assert_allclose(h[1], h[7])
    with pytest.raises(ValueError, match="at least r = 3"):
        make_problem("linear", 2, rank=3, heads="balanced", seed=0)
    with pytest.raises(ValueError, match="clusters"):
        make_problem("linear", 8, rank=3, heads="balanced", clusters=2, seed=0)
    with pytest.raises(ValueError, match="dependent"):
        whiten(np.ones((4, 2)))


def test_the_design_experiment_measures_less_scatter_with_balanced_heads(cli):
    res = cli("design", "--n", "4", "8", "--rounds", "60", "--instances", "8", "--json", "--no-progress", "-j", "1",
              "--out", "out")
    assert res.returncode == 0, res.stderr
    s = json.loads(res.stdout)["scatter"]
    assert s["balanced"]["4"]["G"]["sd"] < s["iid"]["4"]["G"]["sd"] / 3
    lo, hi = s["iid"]["4"]["R"]["ci"]
    assert lo < s["iid"]["4"]["R"]["sd"] < hi
