"""slmscale: scaling studies of speech language models."""

__version__ = "0.1.0"
