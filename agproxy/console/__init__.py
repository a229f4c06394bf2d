"""The web console: static files shipped inside the package, data from the admin API."""

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
