"""Fixtures shared by several test files."""

import pytest

from tests.helpers import run_script


@pytest.fixture(scope="session")
def shapes(tmp_path_factory):
    """A small synthetic shapes dataset (12 train, 4 val images of 127 x 127), COCO format."""
    out = tmp_path_factory.mktemp("shapes")
    code = run_script(
        "make_shapes", "--out", str(out), "--train", "12", "--val", "4", "--size", "127"
    )
    assert code == 0
    return out
