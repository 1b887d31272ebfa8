"""The column conversions of the stats and drift reads: the same values as a row-by-row conversion, also on sliced
and multi-chunk columns (what LanceDB returns for a table of several fragments)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from router.routing_log.stats import labels, matrix


def test_labels_equal_the_row_by_row_values_on_sliced_chunks() -> None:
    values = ["ft", "rag", "both", "rag", "ft", "ft", "both"]
    column = pa.chunked_array([pa.array(values[:3]), pa.array(values[3:])]).slice(1)
    assert labels(column).tolist() == values[1:]
    assert (labels(column) == "ft").tolist() == [v == "ft" for v in values[1:]]
    assert labels(pa.chunked_array([], type=pa.string())).tolist() == []


def test_matrix_equals_the_row_by_row_vectors_on_sliced_chunks() -> None:
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(9, 4)).astype(np.float32)
    kind = pa.list_(pa.float32(), 4)
    column = pa.chunked_array([pa.array(rows[:5].tolist(), type=kind), pa.array(rows[5:].tolist(), type=kind)])
    sliced = column.slice(2, 6)
    np.testing.assert_array_equal(matrix(sliced), np.asarray(sliced.to_pylist(), dtype=np.float32))
    assert matrix(sliced).shape == (6, 4)
    assert matrix(pa.chunked_array([], type=kind)).shape == (0, 4)
