"""Loaded by pytest (`-p aihub.test_environment`) before Django starts: tests use the development
profile (no HTTPS redirects, the development secret) unless the environment says otherwise."""

import os

os.environ.setdefault("DEBUG", "1")

# Uploads made by tests go to a directory of their own, never into the checkout's data/.
import tempfile  # noqa: E402

os.environ.setdefault("MEDIA_ROOT", tempfile.mkdtemp(prefix="aihub-test-media-"))
