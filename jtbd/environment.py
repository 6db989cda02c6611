"""Quiet, offline defaults for the libraries we drive; set before they are imported.

Each is a default only: a value already in the environment wins (for example
PREFECT_API_URL to run against a Prefect server).
"""

import os

DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # no phoning home from the ephemeral server
    "PREFECT_LOGGING_LEVEL": "WARNING",  # the CLI shows its own progress
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
    "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
    # Task logs quote errors, and an error can quote a participant: keep them out of Prefect's
    # database, which `jtbd forget` cannot reach.
    "PREFECT_LOGGING_TO_API_ENABLED": "false",
    "ANONYMIZED_TELEMETRY": "False",  # chroma
    "ORT_DISABLE_TELEMETRY": "1",  # onnxruntime
    "TOKENIZERS_PARALLELISM": "false",
}


def apply() -> None:
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)


apply()
