"""Checkpoint files: round trip, atomic completion, damaged and partial checkpoints
skipped in favour of the previous one, pruning."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dtb.io import checkpoint as ck


def _state(k: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(k)
    return {"V": rng.normal(size=7), "ring": rng.integers(0, 9, (3, 2, 7)),
            "step": np.array(k * 10, np.int64), "piece0/vals/g_AMPA": np.arange(4.0)}


def test_round_trip(tmp_path):
    ck.save(tmp_path, 10, _state(1), meta={"t_ms": 1.0})
    step, state, meta = ck.load_latest(tmp_path)
    assert step == 10 and meta == {"t_ms": 1.0}
    for k, v in _state(1).items():
        np.testing.assert_array_equal(state[k], v)
        assert state[k].dtype == v.dtype


def test_no_checkpoint_gives_none(tmp_path):
    assert ck.load_latest(tmp_path) is None


def test_damaged_or_partial_checkpoints_fall_back(tmp_path, caplog):
    ck.save(tmp_path, 10, _state(1))
    ck.save(tmp_path, 20, _state(2))
    # a torn write of the newest: bytes changed after completion
    f = ck.step_dir(tmp_path, 20) / "rank-00000.h5"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    # and a newer one that never completed (the job died while writing it)
    partial = ck.step_dir(tmp_path, 30)
    partial.mkdir()
    (partial / "rank-00000.h5").write_bytes(b"half")
    step, state, _ = ck.load_latest(tmp_path)
    assert step == 10
    np.testing.assert_array_equal(state["V"], _state(1)["V"])
    assert "checksum differs" in caplog.text


def test_checkpoint_of_another_rank_count_is_skipped(tmp_path, caplog):
    ck.save(tmp_path, 10, _state(1))
    rec = ck.step_dir(tmp_path, 10) / ck.COMPLETE
    d = json.loads(rec.read_text())
    d["ranks"] = 4
    rec.write_text(json.dumps(d))
    assert ck.load_latest(tmp_path) is None
    assert "4 ranks" in caplog.text


def test_prune_keeps_the_newest(tmp_path):
    for k in range(1, 6):
        ck.save(tmp_path, k * 10, _state(k), keep=2)
    assert [d.name for d in ck.candidates(tmp_path)] == ["step-000000000050",
                                                         "step-000000000040"]


def test_unwritable_directory_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ck.OutputError, match="checkpoint"):
        ck.save(blocker, 10, _state(1))


def test_large_arrays_are_compressed_and_round_trip(tmp_path):
    ring = np.zeros((300, 2, 400), np.int64)  # a delay ring: mostly zeros
    ring[::7, 1, ::3] = np.arange(43 * 134).reshape(43, 134) - 2000
    v = np.random.default_rng(0).normal(size=20_000)  # incompressible, still exact
    d = ck.save(tmp_path, 5, {"ring": ring, "V": v, "step": np.array(5)})
    size = (d / "rank-00000.h5").stat().st_size
    assert size < v.nbytes + ring.nbytes / 4
    _, state, _ = ck.load_latest(tmp_path)
    np.testing.assert_array_equal(state["ring"], ring)
    np.testing.assert_array_equal(state["V"], v)
    assert state["ring"].dtype == np.int64 and state["V"].dtype == np.float64
