"""dovlib: dataset ownership verification helpers (SSCL-BW and AMUSE). See README.md and notebooks/."""

__version__ = "0.1.0"
