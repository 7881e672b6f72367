"""deprl-theory: put DePRL's linear-speedup theorem to the test."""
from ._rng import SeedLike, as_generator, derive_seed

__version__ = "0.1.0"
