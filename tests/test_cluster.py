from __future__ import annotations

import pytest

from rayscale.cluster import validate_address
from rayscale.errors import RayscaleError


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, ""),
        ("", ""),
        ("  ", ""),
        ("local", ""),
        ("auto", "auto"),
        ("10.0.0.5:6379", "10.0.0.5:6379"),
        ("ray://head-svc:10001", "ray://head-svc:10001"),
        ("raycluster-head-svc.default.svc:6379", "raycluster-head-svc.default.svc:6379"),
    ],
)
def test_valid_addresses(given: str | None, expected: str) -> None:
    assert validate_address(given) == expected


@pytest.mark.parametrize(
    "bad", ["localhost", "host:port", "http://head:8265", "head:0", "head:70000", "ray://"]
)
def test_malformed_addresses(bad: str) -> None:
    with pytest.raises(RayscaleError, match="is not 'auto', 'host:port'"):
        validate_address(bad)
