"""Shared fixtures: each lives in tests/fixtures/ and is registered here."""

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.fake_provider",
    "tests.fixtures.gateway",
]
