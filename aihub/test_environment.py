"""Loaded by pytest (`-p aihub.test_environment`) before Django starts: tests use the development
profile (no HTTPS redirects, the development secret) unless the environment says otherwise."""

import os

os.environ.setdefault("DEBUG", "1")

# Uploads made by tests go to a directory of their own, never into the checkout's data/.
import tempfile  # noqa: E402

os.environ.setdefault("MEDIA_ROOT", tempfile.mkdtemp(prefix="aihub-test-media-"))

# No heartbeat or sweeper in the test process (the app's background task would outlive each test's
# event loop); tests of crash safety turn it on in the server processes they start. The outbox's files
# go to a directory of their own.
os.environ.setdefault("HEARTBEAT_SECONDS", "0")
os.environ.setdefault("LEDGER_OUTBOX_DIR", tempfile.mkdtemp(prefix="aihub-test-outbox-"))
