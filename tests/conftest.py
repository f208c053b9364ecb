import os

import pytest

SHARED = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
SHARED_DATA = os.path.join(SHARED, "data")


@pytest.fixture(scope="session")
def shared_data():
  """../shared/data (real research-only fixtures); tests using it skip where it is absent."""
  if not os.path.isdir(SHARED_DATA):
    pytest.skip(f"real fixtures not found at {SHARED_DATA} (../shared beside the project root)")
  return SHARED_DATA
