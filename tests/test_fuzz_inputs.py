"""Property-based fuzzing (Hypothesis) of the readers a user feeds: the YAML config, the brain
file and the observed BOLD table (issue 14, "what else to build").

The property, for every input: the reader either returns a valid object or raises the
project's error for that input (ConfigError / InputError) whose message names the file and
stays short -- never another exception, never a hang.  Example counts are bounded and the
search is derandomized (the same examples on every run), so the suite takes seconds; the
outcomes of a run are printed with ``pytest -s`` (the README's "Reliability: Inputs" counts).
"""

from __future__ import annotations

import collections
import json
import string
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dtb.assimilation.observations import read_bold
from dtb.brain.spec import BrainSpec
from dtb.errors import ConfigError, InputError
from dtb.model.config import load_config

FUZZ = settings(derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])
OUTCOMES: collections.Counter = collections.Counter()
MAX_MESSAGE = 12_000


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    if OUTCOMES:
        print("\nfuzz outcomes:", dict(sorted(OUTCOMES.items())))


def _judge(reader: str, path: Path, call, errors) -> None:
    """Run ``call``; count the outcome; fail on anything but success or ``errors`` that
    name ``path`` in a bounded message."""
    try:
        call()
    except errors as e:
        text = str(e)
        assert path.name in text, text[:500]
        assert len(text) < MAX_MESSAGE, len(text)
        OUTCOMES[f"{reader}: refused"] += 1
    else:
        OUTCOMES[f"{reader}: accepted"] += 1


# --- the YAML config -------------------------------------------------------------------------

VALID = {"simulation": {"dt": 0.1, "t": 10.0, "seed": 1},
         "populations": [{"name": "E", "size": 8, "model": "iaf_psc_exp",
                          "inputs": [{"type": "dc", "amplitude": 300.0}]},
                         {"name": "I", "size": 4, "model": "lif_cond", "type": "I"}],
         "projections": [{"source": "E", "target": "I", "rule": {"kind": "fixed_indegree",
                                                                 "k": 2},
                          "weight": 1.0, "delay": 1.0}]}

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=12))
values = st.recursive(scalars, lambda c: st.one_of(
    st.lists(c, max_size=4), st.dictionaries(st.text(max_size=8), c, max_size=4)),
    max_leaves=20)


def _paths(d, prefix=()):
    """Every path to a value of the nested mapping/list ``d``."""
    yield prefix
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            yield from _paths(v, (*prefix, i))


PATHS = [p for p in _paths(VALID) if p]


def _mutate(path: tuple, value):
    d = json.loads(json.dumps(VALID))
    cur = d
    for k in path[:-1]:
        cur = cur[k]
    cur[path[-1]] = value
    return d


@settings(FUZZ, max_examples=200)
@given(path=st.sampled_from(PATHS), value=values)
def test_fuzz_config_one_field_replaced(tmp_path, path, value):
    """A valid config with one field (any depth) replaced by an arbitrary value."""
    f = tmp_path / "fuzz.yaml"
    f.write_text(yaml.safe_dump(_mutate(path, value)))
    _judge("config", f, lambda: load_config(f), ConfigError)


@settings(FUZZ, max_examples=150)
@given(doc=values)
def test_fuzz_config_arbitrary_document(tmp_path, doc):
    f = tmp_path / "fuzz.yaml"
    f.write_text(yaml.safe_dump(doc))
    _judge("config", f, lambda: load_config(f), ConfigError)


YAML_BITS = ["&a ", "*a", "[", "]", "{", "}", ":", "- ", "\n", "  ", "!!python/object ",
             "'", '"', "#", "populations:", "name: E", "size: 1", "\t", "\x00", "\xe9", "1e9"]


@settings(FUZZ, max_examples=150)
@given(parts=st.lists(st.one_of(st.sampled_from(YAML_BITS), st.text(max_size=6)), max_size=40),
       raw=st.binary(max_size=40))
def test_fuzz_config_raw_text(tmp_path, parts, raw):
    """YAML syntax fragments, anchors and aliases, tags, control characters, bad bytes."""
    f = tmp_path / "fuzz.yaml"
    f.write_bytes("".join(parts).encode("utf-8", "surrogatepass") + raw)
    _judge("config", f, lambda: load_config(f), ConfigError)


# --- the brain file ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def brain(tmp_path_factory) -> Path:
    from dtb.brain.build import BuildOptions, build
    from dtb.data import demo_inputs

    d = demo_inputs()
    p = tmp_path_factory.mktemp("fuzzbrain") / "brain.h5"
    build(atlas=d["atlas"], gm=d["gm"], regions=d["regions"], sc=d["sc"],
          lengths=d["lengths"], options=BuildOptions(neurons=3000)).save(p)
    return p


def _members(p: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """Datasets and (object, attribute) pairs of the brain file."""
    dsets, attrs = [], [("/", k) for k in h5py.File(p, "r").attrs]
    with h5py.File(p, "r") as h:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                dsets.append(name)
            attrs.extend((name, k) for k in obj.attrs)
        h.visititems(visit)
    return dsets, attrs


attr_values = st.one_of(st.text(alphabet=string.printable, max_size=30),
                        values.map(lambda v: json.dumps(v, allow_nan=True)),
                        st.integers(-2**40, 2**40), st.floats(allow_nan=True))
arrays = st.one_of(
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=6).map(np.array),
    st.lists(st.integers(-2**40, 2**40), max_size=6).map(lambda x: np.array(x, np.int64)),
    st.lists(st.text(alphabet=string.ascii_letters, max_size=4), min_size=1, max_size=4)
    .map(lambda x: np.array(x, dtype="S4")))


@settings(FUZZ, max_examples=120)
@given(data=st.data())
def test_fuzz_brain_file(brain, tmp_path, data):
    """One fault injected into a valid brain file: an attribute set to arbitrary text,
    JSON or a number; a dataset replaced by an arbitrary array, scaled, or deleted; or the
    file cut short at an arbitrary byte."""
    dsets, attrs = _members(brain)
    f = tmp_path / "fuzz.h5"
    raw = brain.read_bytes()
    kind = data.draw(st.sampled_from(["attr", "dataset", "scale", "delete", "truncate"]))
    if kind == "truncate":
        f.write_bytes(raw[:data.draw(st.integers(0, len(raw) - 1))])
    else:
        f.write_bytes(raw)
        with h5py.File(f, "a") as h:
            if kind == "attr":
                obj, key = data.draw(st.sampled_from(attrs))
                h[obj].attrs[key] = data.draw(attr_values)
            else:
                name = data.draw(st.sampled_from(dsets))
                if kind == "delete":
                    del h[name]
                elif kind == "scale":
                    a = h[name][()]
                    del h[name]
                    h[name] = a * data.draw(st.sampled_from([-1, 0, 10**6])) \
                        if a.dtype.kind in "iuf" else a[:0]
                else:
                    del h[name]
                    h[name] = data.draw(arrays)
    OUTCOMES[f"brain fault: {kind}"] += 1
    _judge("brain", f, lambda: BrainSpec.load(f), InputError)


# --- the BOLD table --------------------------------------------------------------------------

cells = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
                  st.integers(-10**6, 10**6).map(str),
                  st.text(alphabet=string.printable, max_size=5))


@settings(FUZZ, max_examples=150)
@given(header=st.lists(st.one_of(st.integers(-5, 200).map(str), st.text(max_size=4)),
                       min_size=0, max_size=6),
       rows=st.lists(st.lists(cells, max_size=7), max_size=25),
       sep=st.sampled_from([",", "\t", ";"]), suffix=st.sampled_from([".csv", ".tsv"]))
def test_fuzz_bold_table(tmp_path, header, rows, sep, suffix):
    f = tmp_path / f"bold{suffix}"
    text = sep.join(header) + "\n" + "".join(sep.join(r) + "\n" for r in rows)
    f.write_bytes(text.encode("utf-8", "surrogatepass"))

    def read():
        b = read_bold(str(f), 0.8)
        assert np.all(np.isfinite(b.data)) and b.data.shape[1] == len(b.labels)

    _judge("bold", f, read, InputError)


@settings(FUZZ, max_examples=60)
@given(data=st.data())
def test_fuzz_bold_hdf5(tmp_path, data):
    f = tmp_path / "bold.h5"
    with h5py.File(f, "w") as h:
        d = h.create_dataset("bold", data=data.draw(arrays))
        if data.draw(st.booleans()):
            d.attrs["labels"] = data.draw(arrays)
        if data.draw(st.booleans()):
            d.attrs["tr"] = data.draw(st.one_of(st.floats(allow_nan=True), st.text(max_size=3)))
    _judge("bold", f, lambda: read_bold(str(f), 0.8), InputError)


@settings(FUZZ, max_examples=100)
@given(n_regions=st.integers(1, 5), n_rows=st.integers(0, 15), data=st.data())
def test_fuzz_bold_table_one_cell_damaged(tmp_path, n_regions, n_rows, data):
    """A well-formed table (distinct labels, finite values) with at most one cell or
    label replaced by an arbitrary one."""
    labels = data.draw(st.lists(st.integers(1, 500), min_size=n_regions, max_size=n_regions,
                                unique=True))
    rows = [[repr(x) for x in data.draw(st.lists(st.floats(-1, 1), min_size=n_regions,
                                                 max_size=n_regions))]
            for _ in range(n_rows)]
    header = [str(x) for x in labels]
    if data.draw(st.booleans()):
        target = rows if rows and data.draw(st.booleans()) else [header]
        row = data.draw(st.sampled_from(target))
        row[data.draw(st.integers(0, n_regions - 1))] = data.draw(cells)
    f = tmp_path / "bold.csv"
    f.write_text(",".join(header) + "\n" + "".join(",".join(r) + "\n" for r in rows))

    def read():
        b = read_bold(str(f), 0.8)
        assert np.all(np.isfinite(b.data)) and b.data.shape == (n_rows, n_regions)

    _judge("bold", f, read, InputError)
