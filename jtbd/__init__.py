"""jtbd-coder: code Jobs-to-be-Done interview transcripts into grounded codes."""

__version__ = "0.1.0"
