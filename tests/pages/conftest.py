"""Fixtures for page tests: the fake provider servers of the model-list tests."""

from tests.test_models_list import serve  # noqa: F401 - re-exported as a fixture for these tests
