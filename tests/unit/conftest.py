"""Unit tests read the docker commands a step issues from invoke's MockContext: those commands
must reach it, not the engine's socket (`engine_api`, which the engine tests cover)."""
import pytest


@pytest.fixture(autouse=True)
def commands_through_the_context(monkeypatch):
    monkeypatch.setenv("BOTTLE_ENGINE_API", "off")
