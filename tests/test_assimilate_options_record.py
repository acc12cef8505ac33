"""``Options.to_record`` / ``Options.from_record`` (issue 17, item 4: ``dtb assimilate
--resume`` rebuilds the run from a serialised, resolved record, not from re-parsed argv): the
JSON round trip gives back every field exactly, with its type (tuples, paths, the
preprocessing steps, the bounds' pairs, None), for an options object where every field
differs from its default; a record from another dtb is refused naming the fields."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from dtb.assimilation.options import Options, assimilate_parser, check_args
from dtb.errors import ConfigError


def non_default() -> Options:
    """Every field set, none to the value ``check_args`` or the dataclass gives by default."""
    return Options(
        demo=False, brain=Path("data/sub-01_brain.h5"), bold=Path("/abs/sub-01_bold.tsv"),
        tr_s=0.72, members=5, params=("g_NMDA", "I_e"), population="I",
        bounds={"g_NMDA": (0.004, 0.015), "I_e": (-1.5, 2.0)}, prior_sd=0.3,
        holdout_regions=(3, "ctx-lh-insula", -7), holdout_fraction=0.1,
        preprocess=[("psc", True), ("detrend", 2), ("band", (0.01, 0.1)), ("zscore", True),
                    ("scale", 0.5)],
        method="enkf", inflation=1.1, rtps=0.2, rw_sd=0.01, obs_sd=0.003, localize=False,
        dt_ms=0.25, substeps=3, spinup_s=1.5, free_run_trs=7, hemo="stephan2007", seed=9,
        threads=1, ranks_per_member=2, out=Path("runs/fit one"), overwrite=True, quiet=True,
        neurons=5000, trs=30, labels="labels.txt", atlas="/abs/atlas.nii.gz",
        dataset="data/bold", allow_unobserved=True, allow_extra=True,
        checkpoint_every=1234.5, confounds="conf.tsv", confound_columns=("trans_*", "csf"))


def _typed(x):
    """``x`` with the type of every nested value spelled out (1 == 1.0 == True in Python)."""
    if isinstance(x, dict):
        return ("dict", sorted((k, _typed(v)) for k, v in x.items()))
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, [_typed(v) for v in x])
    return (type(x).__name__, x)


def test_every_field_of_the_example_differs_from_its_default() -> None:
    o = non_default()
    demo_defaults = check_args(assimilate_parser().parse_args(["assimilate", "--demo"]))
    for f in dataclasses.fields(Options):
        if f.name == "extra":
            continue
        v = getattr(o, f.name)
        assert v != getattr(demo_defaults, f.name), f.name
        if f.default is not dataclasses.MISSING:
            assert v != f.default, f.name


def test_the_json_round_trip_gives_every_field_back_exactly() -> None:
    o = non_default()
    text = json.dumps(o.to_record(), allow_nan=False)       # plain JSON, as the manifest
    back = Options.from_record(json.loads(text))
    for f in dataclasses.fields(Options):
        if f.name == "extra":
            continue
        assert _typed(getattr(back, f.name)) == _typed(getattr(o, f.name)), f.name
    assert back.extra == {} and "extra" not in o.to_record()
    assert back == dataclasses.replace(o, extra={})


def test_other_preprocessing_steps_and_empty_values_round_trip() -> None:
    o = dataclasses.replace(non_default(), preprocess=[("detrend", "constant")], bounds={},
                            holdout_regions=(), brain=None, bold=None, obs_sd=None,
                            free_run_trs=None, threads=None, checkpoint_every=None,
                            labels=None, atlas=None, confounds=None, confound_columns=())
    back = Options.from_record(json.loads(json.dumps(o.to_record())))
    for f in dataclasses.fields(Options):
        assert _typed(getattr(back, f.name)) == _typed(getattr(o, f.name)), f.name


def test_relative_paths_are_made_absolute_against_the_run_s_directory() -> None:
    back = Options.from_record(non_default().to_record(), cwd="/work/study")
    assert back.brain == Path("/work/study/data/sub-01_brain.h5")
    assert back.bold == Path("/abs/sub-01_bold.tsv")
    assert (back.labels, back.atlas, back.confounds) == ("/work/study/labels.txt",
                                                         "/abs/atlas.nii.gz",
                                                         "/work/study/conf.tsv")
    assert back.out == Path("/work/study/runs/fit one")


def test_a_record_of_another_dtb_is_refused_naming_the_fields() -> None:
    rec = non_default().to_record()
    del rec["members"]
    rec["ensemble_size"] = 5
    with pytest.raises(ConfigError) as e:
        Options.from_record(rec, where="RUN/manifest.json")
    text = str(e.value)
    assert "RUN/manifest.json" in text and "'members'" in text and "'ensemble_size'" in text
    rec = non_default().to_record()
    rec["bounds"] = {"g_NMDA": 0.004}
    with pytest.raises(ConfigError, match="RUN/manifest.json"):
        Options.from_record(rec, where="RUN/manifest.json")


def test_fields_with_defaults_may_be_missing() -> None:
    rec = non_default().to_record()
    for k in ("labels", "atlas", "dataset", "confounds", "confound_columns"):
        del rec[k]
    back = Options.from_record(rec)
    assert (back.labels, back.dataset, back.confound_columns) == (None, "bold", ())
