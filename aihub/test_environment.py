"""Loaded by pytest (`-p aihub.test_environment`) before Django starts: tests use the development
profile (no HTTPS redirects, the development secret) unless the environment says otherwise."""

import os

os.environ.setdefault("DEBUG", "1")
