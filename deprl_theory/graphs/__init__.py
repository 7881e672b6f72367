"""Gossip graphs and mixing matrices (assumption A4 of the theory).

DePRL's consensus step is ``Phi <- W Phi``.  The theory needs ``W`` symmetric,
nonnegative, doubly stochastic, zero off the graph, and ``rho = ||W - 11^T/n||_2 < 1``
(spectral gap ``1 - rho > 0``).  This package builds ``W`` for the usual topologies
and weight rules, measures its spectrum, and checks A4 property by property:

* :mod:`.topologies`  the registry of named topologies, edge lists, adjacency matrices
* :mod:`.weights`     weight rules, laziness, :func:`mixing_matrix`
* :mod:`.spectra`     mixing rate and spectral gap (dense or ARPACK); the whole-spectrum noise sum
* :mod:`.checks`      :func:`mixing_report` (every A4 check) and :func:`check_mixing` (raises)
"""
from .checks import DegreeStats, MixingMatrixError, MixingReport, check_mixing, mixing_report
from .spectra import effective_gap, mixing_rate, noise_spectral_sum, spectral_gap
from .topologies import TOPOLOGIES, TOPOLOGY_INFO, Topology, adjacency, graph_adjacency, topology_help
from .weights import WEIGHT_RULES, lazy, max_degree_weights, metropolis_weights, mixing_matrix, uniform_weights

__all__ = [
    "TOPOLOGIES",
    "TOPOLOGY_INFO",
    "Topology",
    "topology_help",
    "WEIGHT_RULES",
    "MixingMatrixError",
    "MixingReport",
    "DegreeStats",
    "adjacency",
    "graph_adjacency",
    "metropolis_weights",
    "max_degree_weights",
    "uniform_weights",
    "lazy",
    "mixing_matrix",
    "spectral_gap",
    "mixing_rate",
    "noise_spectral_sum",
    "effective_gap",
    "check_mixing",
    "mixing_report",
]
