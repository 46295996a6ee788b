"""raysweep: Ray-distributed sweeps for downstream scaling-law studies (Isik et al. 2024)."""

__version__ = "0.1.0"
