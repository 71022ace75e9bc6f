"""Fuzzing with hypothesis: nothing but the documented error types escapes the parsers."""

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnistlab.data import parse_idx
from mnistlab.errors import DataError


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_idx_parser_on_random_bytes(blob):
    try:
        arr = parse_idx(blob, "fuzz")
    except DataError:
        return
    assert arr.dtype.name == "uint8" and arr.size == len(blob) - 4 - 4 * arr.ndim


@settings(max_examples=300, deadline=None)
@given(
    dims=st.lists(st.integers(0, 40), min_size=1, max_size=3),
    extra=st.integers(-30, 30),
    magic=st.sampled_from([2049, 2051, 2050, 0x0803, 0x0D03]),
)
def test_idx_parser_on_plausible_headers(dims, extra, magic):
    size = 1
    for d in dims:
        size *= d
    header = struct.pack(">I", magic)[:3] + bytes([len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)
    body = bytes(max(0, size + extra))
    try:
        arr = parse_idx(header + body, "fuzz")
    except DataError as e:
        assert "fuzz" in str(e)
        return
    assert list(arr.shape) == dims and len(body) == size
