"""Tests of the symbolic bound: the consequences docs/theory.md, section 5 says it must yield."""
from __future__ import annotations

import numpy as np
import pytest
import sympy

from deprl_theory.bound import (
    SYMBOLS,
    Bound,
    default_bound,
    evaluate,
    evaluate_expr,
    exponents,
    leading_term,
    make_bound,
    parse,
    step_size_conditions,
    substitute,
    term_exponents,
    theory_step_rule,
    to_latex,
    to_strings,
    transient_K0,
)

N, K, rho = SYMBOLS["N"], SYMBOLS["K"], SYMBOLS["rho"]
HALF = sympy.Rational(1, 2)


@pytest.fixture(scope="module")
def theory_bound() -> Bound:
    """Template under beta = c sqrt(N/K), a = 1/N (the theory's step sizes)."""
    return substitute(default_bound(), theory_step_rule("1/N"))


@pytest.fixture(scope="module")
def user_bound() -> Bound:
    return make_bound(
        {"T_lead": "A/sqrt(N*K)", "T_cons": "B*N/K"},
        ["K >= C*N"],
        quantity="user metric",
    )


def test_default_bound_has_template_terms():
    b = default_bound()
    assert list(b.terms) == ["T_opt", "T_rep", "T_head", "T_cons"]
    assert b.consensus_terms == ("T_cons",)
    s = SYMBOLS
    assert sympy.simplify(b.terms["T_opt"] - 2 * s["Delta"] / (s["beta"] * K)) == 0
    assert len(b.conditions) == 3


def test_a_equal_one_over_N_turns_quantity_into_G():
    # a H + R with a = 1/N is R + H/N = G: the quantity bounded is the full gradient
    H, R = sympy.symbols("H R", positive=True)
    a_H_plus_R = SYMBOLS["a"] * H + R
    rule = theory_step_rule("1/N")
    assert sympy.simplify(a_H_plus_R.subs(SYMBOLS["a"], rule["a"]) - (R + H / N)) == 0
    assert "G = R + H/N" in default_bound().quantity


def test_leading_term_speeds_up_linearly_under_theory_rule(theory_bound):
    lead = leading_term(theory_bound)
    assert lead.names == ("T_opt", "T_rep", "T_head")
    assert lead.exponents == {"N": -HALF, "K": -HALF}
    # T_head ties in K but decays faster in N; the N rate is set by T_opt + T_rep
    assert lead.rate_setting == ("T_opt", "T_rep")
    assert lead.term_exponents["T_head"] == {"N": -3 * HALF, "K": -HALF}


def test_fixed_head_ratio_gives_no_head_speedup():
    b = substitute(default_bound(), theory_step_rule())  # a kept symbolic
    ex = term_exponents(b)
    assert ex["T_head"] == {"N": HALF, "K": -HALF}
    assert ex["T_opt"] == {"N": -HALF, "K": -HALF}
    lead = leading_term(b)
    assert lead.exponents["N"] == HALF
    assert lead.rate_setting == ("T_head",)


def test_consensus_term_is_higher_order(theory_bound):
    # T_cons = O(N/K): exponent +1 in N (asymptotic, the 2 L_thetaphi^2 / N part dies)
    assert term_exponents(theory_bound)["T_cons"] == {"N": 1, "K": -1}


def test_exponents_of_monomial_and_sum():
    assert exponents("A*N**2/sqrt(K)", "N") == 2
    assert exponents("A*N**2/sqrt(K)", K) == -HALF
    assert exponents("(2/N + 1)*N", "N") == 1  # limit exponent of a non-monomial
    assert exponents("A", "N") == 0


def test_transient_scales_as_N3_rho4_over_gap4(theory_bound):
    t = transient_K0(default_bound(), theory_step_rule("1/N"))
    assert t.N_exponent == 3
    assert t.consensus == ("T_cons",)
    scale = N**3 * rho**4 / (1 - rho) ** 4
    # large-N form: K0 / (N^3 rho^4 / (1 - rho)^4) is free of N and rho
    ratio = sympy.simplify(t.K0_large_N / scale)
    assert not ratio.has(N) and not ratio.has(rho)
    # exact K0: rho enters only via rho^4 / (1 - rho)^4, for every N
    assert not sympy.simplify(t.K0 / scale).has(rho)
    # and it is the crossing point: consensus term == leading term at K = K0
    lead = sum(theory_bound.terms[n] for n in t.leading)
    gap = (theory_bound.terms["T_cons"] - lead).subs(K, t.K0)
    assert sympy.simplify(gap) == 0


def test_transient_on_ring_grows_like_N11():
    # ring: 1 - rho ~ g / N^2, so K0 ~ N^3 (N^2)^4 = N^11 (docs/theory.md, section 5)
    rule = {**theory_step_rule("1/N"), "rho": "1 - g/N**2"}
    t = transient_K0(default_bound(), rule)
    assert t.N_exponent == 11


def test_head_rule_given_once():
    assert theory_step_rule(head_rule="1/N") == theory_step_rule("1/N")
    with pytest.raises(ValueError, match="not both"):
        theory_step_rule("1/N", head_rule="1/N")


def test_transient_needs_a_step_rule():
    # without beta = c sqrt(N/K) no term decays in K except T_opt, so T_cons never dies
    with pytest.raises(ValueError, match="no transient"):
        transient_K0(default_bound())


def test_step_size_conditions_solved_for_K():
    s = SYMBOLS
    conds = step_size_conditions(default_bound(), theory_step_rule("1/N"))
    expected = sympy.Ge(K, 6 * s["c"] ** 2 * N * rho**2 * s["L_phi"] ** 2 / (1 - rho) ** 2)
    assert any(
        isinstance(c, sympy.Ge) and c.lhs == K and sympy.simplify(c.rhs - expected.rhs) == 0
        for c in conds
    )
    assert sympy.Lt(rho, 1) in conds


def test_user_bound_round_trips_through_strings(user_bound):
    back = Bound.from_strings(**to_strings(user_bound))
    assert back == user_bound
    default = default_bound()
    assert Bound.from_strings(**to_strings(default)) == default
    substituted = substitute(default, theory_step_rule("1/N"))
    assert Bound.from_strings(**to_strings(substituted)) == substituted


def test_user_bound_analysis(user_bound):
    b = user_bound
    assert b.consensus_terms == ("T_cons",)
    lead = leading_term(b)
    assert lead.names == ("T_lead",)
    assert lead.exponents == {"N": -HALF, "K": -HALF}
    t = transient_K0(b)
    A, B = sympy.symbols("A B", positive=True)
    assert sympy.simplify(t.K0 - B**2 * N**3 / A**2) == 0
    assert t.N_exponent == 3
    assert step_size_conditions(b) == (sympy.Ge(K, SYMBOLS["N"] * sympy.Symbol("C", positive=True)),)


def test_user_rule_may_chain_and_parse_strings():
    b = make_bound({"T": "2*Delta/(beta*K) + alpha"})
    out = substitute(b, {"beta": "c*sqrt(N/K)", "alpha": "beta/(N*tau)"})
    assert exponents(out.terms["T"], "N") == -HALF
    with pytest.raises(ValueError, match="unknown symbol"):
        substitute(b, {"bta": "c"})


def test_parse_maps_foreign_symbols_and_rejects_bad_input():
    assert parse(sympy.Symbol("N") / 2) == N / 2
    assert parse("N^3") == N**3
    assert parse("K**0.5") == sympy.sqrt(K)
    with pytest.raises(ValueError, match="consensus_terms"):
        make_bound({"T": "1/K"}, consensus_terms=["T_cons"])
    with pytest.raises(ValueError, match="never hold"):
        make_bound({"T": "1/K"}, ["rho < 0"])


def test_evaluate_broadcasts_and_matches_hand_computation(theory_bound):
    consts = dict(c=0.5, Delta=2.0, L_phi=1.5, sigma_phi=0.7, L_theta=2.0,
                  sigma_theta=1.1, tau=5.0, L_thetaphi=0.3, delta=0.2, rho=0.4)
    Ns = np.array([4, 8, 16])[:, None]
    Ks = np.array([500, 1000, 2000, 4000])
    out = evaluate(theory_bound, consts, N=Ns, K=Ks)
    assert set(out) == {"T_opt", "T_rep", "T_head", "T_cons", "total"}
    for v in out.values():
        assert v.shape == (3, 4)
    g = consts
    NK = Ns * Ks
    np.testing.assert_allclose(out["T_opt"], 2 * g["Delta"] / g["c"] / np.sqrt(NK))
    np.testing.assert_allclose(
        out["T_rep"], g["c"] * g["L_phi"] * g["sigma_phi"] ** 2 / np.sqrt(NK))
    np.testing.assert_allclose(
        out["T_head"],
        g["c"] * g["L_theta"] * g["sigma_theta"] ** 2 / (g["tau"] * Ns**1.5 * np.sqrt(Ks)))
    beta = g["c"] * np.sqrt(Ns / Ks)
    cons = ((2 * g["L_thetaphi"] ** 2 / Ns + g["L_phi"] ** 2) * 6 * g["rho"] ** 2 * beta**2
            * (g["sigma_phi"] ** 2 + g["delta"] ** 2) / (1 - g["rho"]) ** 2)
    np.testing.assert_allclose(out["T_cons"], cons)
    np.testing.assert_allclose(
        out["total"], out["T_opt"] + out["T_rep"] + out["T_head"] + out["T_cons"])
    # constants may be arrays too, and a single expression evaluates the same way
    np.testing.assert_allclose(
        evaluate_expr("A/sqrt(N*K)", {"A": np.array([1.0, 2.0])}, N=4, K=1), [0.5, 1.0])


def test_evaluate_names_missing_constants(theory_bound):
    with pytest.raises(ValueError, match=r"missing constants.*'Delta'.*'sigma_phi'"):
        evaluate(theory_bound, {"c": 0.5, "L_phi": 1.0}, N=4, K=100)
    with pytest.raises(ValueError, match="both"):
        evaluate(theory_bound, {"N": 4}, N=4)


def test_latex_names_every_term(theory_bound, user_bound):
    tex = to_latex(theory_bound)
    for name in ("opt", "rep", "head", "cons"):
        assert rf"T_{{\mathrm{{{name}}}}}" in tex
    assert r"\underbrace" in tex and r"\le" in tex and r"\beta =" in tex
    user_tex = to_latex(user_bound)
    assert r"T_{\mathrm{lead}}" in user_tex and "user metric" in user_tex


def test_a_formula_behaves_the_same_as_a_string_and_as_a_sympy_object():
    A, K, p = sympy.symbols("A K p", positive=True)
    with pytest.raises(ValueError, match=r"exponents must be numbers, got -p") as as_string:
        make_bound({"T": "A*K**(-p)"})
    with pytest.raises(ValueError, match=r"exponents must be numbers, got -p") as as_object:
        make_bound({"T": A * K ** (-p)})
    assert str(as_string.value) == str(as_object.value)
    assert make_bound({"T": A * K ** sympy.Rational(-1, 2)}).terms == make_bound({"T": "A*K**(-1/2)"}).terms


@pytest.mark.parametrize("consensus,asymptotic", [("B*N**2/K", 5), ("B*N/K**2", 1)])
def test_a_K0_with_no_closed_power_law_is_said_in_words_with_numbers(consensus, asymptotic):
    """log(K)/sqrt(N K) against a consensus term: K0 is a LambertW, its N exponent has no closed limit."""
    from deprl_theory.bound import LOCAL_RANGE

    t = transient_K0(make_bound({"T": "A*log(K)/sqrt(N*K)", "C": consensus}, consensus_terms=("C",)))
    assert not t.K0.has(sympy.Limit) and t.N_exponent is None and t.K0_large_N is None
    assert "no closed power law in N" in t.note and "LambertW" in t.note
    assert set(t.N_exponent_local) == set(LOCAL_RANGE)
    lo, hi = (t.N_exponent_local[x] for x in LOCAL_RANGE)
    # the real branch: K0 grows with N, and its local exponent creeps up towards the log-free law's
    assert 0 < lo < hi < asymptotic
    assert f"{lo:.3g} at N = {LOCAL_RANGE[0]:g}" in t.note
    # and the root solves the equation it came from (A = B = 1, N = 16)
    K0 = float(t.K0.subs({s: (16 if s.name == "N" else 1) for s in t.K0.free_symbols}))
    from deprl_theory.bound import parse

    c = parse(consensus)
    lhs = c.subs({s: {"N": 16, "K": K0}.get(s.name, 1) for s in c.free_symbols})
    assert float(lhs) == pytest.approx(np.log(K0) / np.sqrt(16 * K0), rel=1e-9)


def test_exponents_never_return_an_unevaluated_limit():
    from deprl_theory.bound import NoClosedExponent

    with pytest.raises(NoClosedExponent, match=r"no closed power law in N.*local exponent"):
        exponents(transient_K0(make_bound({"T": "A*log(K)/sqrt(N*K)", "C": "B*N**2/K"},
                                          consensus_terms=("C",))).K0, "N")
    assert exponents("A*log(K)/sqrt(N*K)", "K") == sympy.Rational(-1, 2)  # a log factor has an asymptotic exponent
