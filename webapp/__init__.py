"""Draftroom's studio: the REST API and the Gradio UI over one shared engine (see webapp.server)."""

import os

# No telemetry, no update checks: the studio must run with no network beyond its own port.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
