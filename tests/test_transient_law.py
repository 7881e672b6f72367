"""The transient law: measured K0 from records, the fit, the models, the held-out and named checks, the table."""
import numpy as np
import pytest

from deprl_theory.experiments import cell_params
from deprl_theory.experiments.transient_law import TransientLawStudy, analyse_transient_law

ROUNDS = (125, 250, 500, 1000, 2000, 4000, 8000)


def _planted_records(study, K0, seeds=3, noise=0.0, seed=0):
    """Gbar of the centralized run ~ 1/sqrt(N K); gossip's ratio to it is 1 + 0.25 (K0 / K)^(1/2), crossing
    the factor 1.25 exactly at ``K0(N, topology, gap)``."""
    rng = np.random.default_rng(seed)
    recs = []
    for params in study.cells():
        n, K = params["N"], params["K"]
        g = 1 / np.sqrt(n * K)
        if params["algorithm"] == "deprl":
            g *= 1 + 0.25 * np.sqrt(K0(n, params["topology"], params["gap"]) / K)
        for j in range(seeds):
            value = g * np.exp(noise * rng.standard_normal())
            recs.append({"params": params, "seed": j, "result": {"diverged": False, "averages": {"G": value}}})
    return recs


def _law(a, q, C=2.0, named=None):
    def K0(n, topology, gap):
        if topology != "exact_gap":
            return named[topology]
        return C * n ** a * gap ** -q
    return K0


@pytest.fixture(scope="module")
def study():
    return TransientLawStudy(n=(4, 8, 16), gaps=(0.2, 0.14, 0.1, 0.07, 0.05), rounds=ROUNDS,
                             held_out=((32, 0.12),), named=(("ring", 16),), seeds=3)


def test_a_planted_law_is_recovered_and_the_held_out_point_passes(study):
    res = analyse_transient_law(study, _planted_records(study, _law(1.0, 2.0, named={"ring": 300.0}), noise=0.01))
    assert res.fit is not None and res.fit.n_points >= 12
    assert res.fit.cis["N"].contains(1.0) and res.fit.cis["1/(1-rho)"].contains(2.0)
    assert res.a == pytest.approx(1.0, abs=0.1) and res.q == pytest.approx(2.0, abs=0.15)
    (held,) = res.held_out
    assert held["passed"] and held["ratio"] == pytest.approx(1.0, abs=0.2)
    # the template's a = 3 is outside the measured interval, the noise-dominated q = 2 inside
    models = {m["model"]: m for m in res.models}
    assert models["template"]["a_in_ci"] is False and models["template"]["q_in_ci"] is False
    assert models["noise-dominated"]["q_in_ci"] is True and models["noise-dominated"]["q_asymptotic"] == 2


@pytest.mark.parametrize("off,censored", [(0.25, None), (4.0, "above")])
def test_a_held_out_point_off_the_law_fails(study, off, censored):
    def K0(n, topology, gap):
        return off * _law(1.0, 2.0)(n, topology, gap) if n == 32 else _law(1.0, 2.0)(n, topology, gap)
    res = analyse_transient_law(study, _planted_records(study, lambda n, t, g: 300.0 if t == "ring" else K0(n, t, g),
                                                        noise=0.01))
    (held,) = res.held_out
    assert held["censored"] == censored and held["passed"] is False


def test_censored_cells_stay_out_of_the_fit_and_the_table_marks_extrapolation(study):
    res = analyse_transient_law(study, _planted_records(study, _law(0.0, 2.0, C=2.0, named={"ring": 50.0})))
    censored = [p for p in res.points if p["censored"]]
    assert censored and all(not p["in_fit"] for p in censored)  # K0 = 2 / 0.2^2 = 50 < 125: below the grid
    assert all(p["censored"] == "below" for p in censored)
    table = res.table
    assert table["rows"]["complete"]["16"]["K0"] == 0.0
    assert table["rows"]["ring"]["1024"]["extrapolated"] and "N = 1024" in table["rows"]["ring"]["1024"]["outside"][0]
    assert not table["rows"]["ring"]["16"]["extrapolated"]  # N = 16 and the ring's gap 0.051 inside the fit
    # the law read at the ring's gap or at its effective gap (0.22): the named check says which the data follow
    (ring,) = res.named
    assert ring["measured"] == "<= 125" and ring["at_gap"]["passed"] is False


def test_no_law_from_too_few_points_says_why():
    study = TransientLawStudy(n=(4, 8), gaps=(0.5, 0.3), rounds=(125, 250), held_out=(), named=(), seeds=2)
    res = analyse_transient_law(study, _planted_records(study, lambda n, t, g: 1.0, seeds=2))
    assert res.fit is None and res.fit_error.startswith("no law") and "censored" in res.fit_error
    assert res.table == {} and res.held_out == []


@pytest.mark.parametrize("kwargs,fragment", [
    ({"n": (8,)}, "worker counts"), ({"gaps": (0.1, 1.0)}, "gaps"),
    ({"held_out": ((4, 0.1),), "n": (4, 8), "gaps": (0.1, 0.2)}, "in the fitted"),
    ({"cell": {"topology": "ring"}}, "exact-gap"), ({"factor": 1.0}, "factor")])
def test_study_rejects_what_cannot_measure_a_law(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        TransientLawStudy(**kwargs)


def test_cells_share_the_reference_per_N():
    study = TransientLawStudy(n=(4, 8), gaps=(0.1, 0.2), rounds=(100, 200), held_out=((8, 0.15),),
                              named=(("ring", 8),))
    cells = study.cells()
    refs = [c for c in cells if c["algorithm"] == "centralized"]
    assert len(refs) == 2 * 2 and len(cells) == len({tuple(sorted((k, str(v)) for k, v in c.items())) for c in cells})
    assert cell_params(N=8, K=100, topology="ring") in cells
