"""Fixtures of the real-browser tests (see browser_support)."""
import pytest
from browser_support import artifacts_folder, server_factory


@pytest.fixture
def artifacts():
    return artifacts_folder()


@pytest.fixture
def serve(tmp_path, request):
    """``serve(app, notebook=...)`` starts a token-less front end on a temporary folder."""
    return server_factory(tmp_path, request)
