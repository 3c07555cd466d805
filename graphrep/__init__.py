"""graphrep: replicate graph ANN indexes by their edge deltas, and measure what it buys."""

__version__ = "0.1.0"
