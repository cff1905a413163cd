"""Routing's tests use the in-process parts of tests/chat/conftest.py on the suite's real Redis."""

from tests.chat.conftest import live, parts_store  # noqa: F401 - fixtures used by these tests
