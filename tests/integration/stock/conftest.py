import pytest

from tests import stock_world


@pytest.fixture
def world(session):
    return stock_world.build(session)
