"""What a run records: the ``record:`` section of a configuration and ``--record`` flags,
parsed and validated before anything is built (dtb.engine.recording records it).

The ``record:`` section of a YAML configuration (or ``--record`` on the command line)::

    record:
      spikes: all              # all | none | {sample: N}  (N neurons per population)
      rates: 1.0               # population rates, bin width in ms (false: off)
      units: 10.0              # rates per unit (region or voxel), bin width in ms (false: off)
      samples:                 # membrane potential and synaptic state of chosen neurons
        neurons: {E: 5, I: [0, 7]}   # per population: a count (spread evenly) or node ids
        every: 10              # one sample every 10 steps
        variables: [V, syn]    # V (mV) and/or syn (the 4 synaptic channels of the model)
      bold: {tr_ms: 720.0, baseline_hz: 5.0}   # BOLD per unit (Balloon-Windkessel)
                               # or bold: 0.72s / 720ms / 720 (a bare number is ms)
      hdf5: false              # also write the dense series to series.h5
      chunk_columns: 512       # columns (units, neurons) per chunk of the dense series
      spike_buffer_mb: 64      # spikes a rank holds in memory before appending them to disk

Defaults: every spike, population rates in 1 ms bins, unit rates in 10 ms bins (networks
with units), no samples, no BOLD, Zarr only.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dtb.errors import ConfigError
from dtb.model.problems import Problems

SAMPLE_VARIABLES = ("V", "syn")
# A BOLD TR given without a unit is in ms (as every time of the engine and the record
# section); below this many ms a bare number is more likely seconds (dtb assimilate --tr,
# BIDS RepetitionTime: 0.72 means 720 ms) and is refused as ambiguous.
MIN_BARE_TR_MS = 20.0
_UNIT_MS = {"ms": 1.0, "s": 1000.0}


@dataclass(frozen=True)
class SampleSpec:
    """Neurons to sample: ``neurons`` maps a population to a count (spread evenly over it)
    or to a tuple of node ids; one sample every ``every`` steps of ``variables``."""

    neurons: tuple[tuple[str, int | tuple[int, ...]], ...]
    every: int = 1
    variables: tuple[str, ...] = ("V",)

    def to_dict(self) -> dict[str, Any]:
        return {"neurons": {k: (list(v) if isinstance(v, tuple) else v)
                            for k, v in self.neurons},
                "every": self.every, "variables": list(self.variables)}


@dataclass(frozen=True)
class RecordSpec:
    """What to record.  ``spikes``: "all", "none" or "sample" (``spike_sample`` neurons per
    population); ``rates_ms`` / ``units_ms``: bin widths in ms (None: off); ``samples``;
    ``bold_tr_ms``: BOLD sampling interval in ms (None: off) with ``bold_baseline_hz``;
    ``hdf5``: also write series.h5; ``spike_buffer_mb``: spikes (16 bytes each) a rank holds
    in memory before it appends them to its spill file (dtb.io.sonata)."""

    spikes: str = "all"
    spike_sample: int = 0
    rates_ms: float | None = 1.0
    units_ms: float | None = 10.0
    samples: SampleSpec | None = None
    bold_tr_ms: float | None = None
    bold_baseline_hz: float = 5.0
    hdf5: bool = False
    chunk_columns: int = 512
    spike_buffer_mb: float = 64.0

    def to_dict(self) -> dict[str, Any]:
        """The ``record:`` mapping that parses back to this spec."""
        return {
            "spikes": {"sample": self.spike_sample} if self.spikes == "sample" else self.spikes,
            "rates": self.rates_ms if self.rates_ms is not None else False,
            "units": self.units_ms if self.units_ms is not None else False,
            "samples": self.samples.to_dict() if self.samples else None,
            "bold": ({"tr_ms": self.bold_tr_ms, "baseline_hz": self.bold_baseline_hz}
                     if self.bold_tr_ms is not None else False),
            "hdf5": self.hdf5,
            "chunk_columns": self.chunk_columns,
            "spike_buffer_mb": self.spike_buffer_mb,
        }


# --- parsing ---------------------------------------------------------------------------------

def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _bin(v: Any, path: str, add: Callable[[str, Any, str], None],
         default: float | None) -> float | None:
    if v is None or v is True:
        return default
    if v is False or v == "off":
        return None
    if isinstance(v, Mapping):
        extra = set(v) - {"bin_ms"}
        if extra:
            add(f"{path}.{sorted(extra)[0]}", v[sorted(extra)[0]], "only bin_ms")
            return default
        v = v.get("bin_ms", default)
    if not (_num(v) and v > 0):
        add(path, v, "a bin width in ms > 0, or false")
        return default
    return float(v)


def parse_record(d: Any, add: Callable[[str, Any, str], None],
                 path: str = "record") -> RecordSpec:
    """A RecordSpec from the ``record:`` mapping; problems go to ``add(path, value,
    expected)`` (dtb.model.config's collector) and the defaults stand in for bad values."""
    base = RecordSpec()
    if d is None:
        return base
    if not isinstance(d, Mapping):
        add(path, d, "a mapping (spikes, rates, units, samples, bold, hdf5)")
        return base
    allowed = {"spikes", "rates", "units", "samples", "bold", "hdf5", "chunk_columns",
               "spike_buffer_mb"}
    for k in d:
        if k not in allowed:
            add(f"{path}.{k}", d[k], f"one of the keys {', '.join(sorted(allowed))}")
    spikes, sample = base.spikes, 0
    s = d.get("spikes", "all")
    if s in ("all", "none"):
        spikes = s
    elif s is False:
        spikes = "none"
    elif isinstance(s, Mapping) and set(s) == {"sample"}:
        if _int(s["sample"]) and s["sample"] > 0:
            spikes, sample = "sample", int(s["sample"])
        else:
            add(f"{path}.spikes.sample", s["sample"], "a number of neurons per population > 0")
    else:
        add(f"{path}.spikes", s, "all, none or {sample: N}")
    rates = _bin(d.get("rates"), f"{path}.rates", add, base.rates_ms)
    units = _bin(d.get("units"), f"{path}.units", add, base.units_ms)
    samples = None
    if d.get("samples") not in (None, False):
        samples = _parse_samples(d["samples"], f"{path}.samples", add)
    tr, baseline = None, base.bold_baseline_hz
    b: Any = d.get("bold")
    if b is True:
        tr = 720.0
    elif isinstance(b, Mapping):
        for k in set(b) - {"tr_ms", "baseline_hz"}:
            add(f"{path}.bold.{k}", b[k], "only tr_ms and baseline_hz")
        tr = b.get("tr_ms", 720.0)
        if isinstance(tr, str):  # from --record bold:tr=...: a unit may be given
            tr = _tr_ms(tr, f"{path}.bold.tr_ms", add)
        elif not (_num(tr) and tr > 0):
            add(f"{path}.bold.tr_ms", tr, "a sampling interval in ms > 0")
            tr = 720.0
        baseline = b.get("baseline_hz", baseline)
        if not (_num(baseline) and baseline > 0):
            add(f"{path}.bold.baseline_hz", baseline, "a baseline firing rate in Hz > 0")
            baseline = base.bold_baseline_hz
    elif (_num(b) and b > 0) or isinstance(b, str):
        tr = _tr_ms(b, f"{path}.bold", add)
    elif b is not None and b is not False:   # 0 == False, but bold: 0 is no TR
        add(f"{path}.bold", b, "true, false, a TR (0.72s, 720ms; a bare number is ms) or "
                               "{tr_ms: ..., baseline_hz: ...}")
    hdf5 = d.get("hdf5", False)
    if not isinstance(hdf5, bool):
        add(f"{path}.hdf5", hdf5, "true or false")
        hdf5 = False
    chunk = d.get("chunk_columns", base.chunk_columns)
    if not (_int(chunk) and chunk > 0):
        add(f"{path}.chunk_columns", chunk, "a number of columns per chunk > 0")
        chunk = base.chunk_columns
    buffer_mb = d.get("spike_buffer_mb", base.spike_buffer_mb)
    if not (_num(buffer_mb) and buffer_mb > 0):
        add(f"{path}.spike_buffer_mb", buffer_mb, "a buffer size in MB > 0")
        buffer_mb = base.spike_buffer_mb
    return RecordSpec(spikes, sample, rates, units, samples,
                      float(tr) if tr is not None else None, float(baseline), hdf5, int(chunk),
                      float(buffer_mb))


def _tr_ms(v: Any, path: str, add: Callable[[str, Any, str], None]) -> float:
    """A BOLD TR in ms from a number (ms) or a string with its unit (``0.72s``,
    ``720ms``) or without (ms).  A bare number below MIN_BARE_TR_MS is refused as
    ambiguous, anything else not a positive time too (720 ms stands in)."""
    text = str(v).strip().lower()
    unit = next((u for u in ("ms", "s") if text.endswith(u)), None)
    number = text[:-len(unit)].strip() if unit else text
    try:
        x = float(number)
    except ValueError:
        x = float("nan")
    if not (math.isfinite(x) and x > 0):
        add(path, v, "a TR > 0 with its unit, e.g. 0.72s or 720ms (a bare number is ms)")
        return 720.0
    if unit is None and x < MIN_BARE_TR_MS:
        add(path, v, f"a TR with its unit: {x:g}s (seconds, as dtb assimilate --tr) or "
                     f"{x:g}ms -- a bare number is ms, and {x:g} ms is too short for a TR "
                     f"(below {MIN_BARE_TR_MS:g} ms a bare number is refused as ambiguous)")
        return 720.0
    return round(x * _UNIT_MS[unit or "ms"], 9)  # no float noise: 0.72 s is 720.0 ms


def _parse_samples(s: Any, path: str, add: Callable[[str, Any, str], None]
                   ) -> SampleSpec | None:
    if not isinstance(s, Mapping):
        add(path, s, "a mapping with neurons, every and variables")
        return None
    for k in set(s) - {"neurons", "every", "variables"}:
        add(f"{path}.{k}", s[k], "one of the keys every, neurons, variables")
    neurons = s.get("neurons")
    items: list[tuple[str, int | tuple[int, ...]]] = []
    if not isinstance(neurons, Mapping) or not neurons:
        add(f"{path}.neurons", neurons, "a mapping population -> count or list of node ids")
    else:
        for pop, v in neurons.items():
            if _int(v) and v > 0:
                items.append((str(pop), int(v)))
            elif (isinstance(v, (list, tuple)) and v
                  and all(_int(x) and x >= 0 for x in v)):
                items.append((str(pop), tuple(sorted(set(int(x) for x in v)))))
            else:
                add(f"{path}.neurons.{pop}", v, "a count > 0 or a non-empty list of node ids "
                                                ">= 0")
    every = s.get("every", 1)
    if not (_int(every) and every > 0):
        add(f"{path}.every", every, "a number of steps > 0")
        every = 1
    variables = s.get("variables", ["V"])
    if isinstance(variables, str):
        variables = [variables]
    if (not isinstance(variables, (list, tuple)) or not variables
            or any(v not in SAMPLE_VARIABLES for v in variables)):
        add(f"{path}.variables", variables, f"a list of {', '.join(SAMPLE_VARIABLES)}")
        variables = ["V"]
    return SampleSpec(tuple(items), int(every), tuple(dict.fromkeys(variables)))


def parse_record_flags(flags: Sequence[str]) -> dict[str, Any]:
    """The ``record:`` mapping for ``--record`` flags (KIND[:ARGS]), for parse_record.

    ``spikes:all``, ``spikes:none``, ``spikes:sample=100``; ``rates:1`` / ``rates:off``;
    ``units:10`` / ``units:off``; ``samples:n=5,every=10,variables=V+syn`` (n per
    population; or ``POP=ID+ID+...``); ``bold:0.72s`` / ``bold:720ms`` / ``bold:720``
    (a bare number is ms) / ``bold:tr=0.72s,baseline=5`` / ``bold:off``; ``hdf5``;
    ``chunks:COLUMNS``; ``spike_buffer:MB``.  Values stay strings/numbers for the validator
    to judge (a BOLD TR stays a string: its unit is read there)."""
    d: dict[str, Any] = {}
    for flag in flags:
        kind, _, arg = flag.partition(":")
        kv = _kv(arg)
        if kind == "spikes":
            d["spikes"] = {"sample": _to_num(kv["sample"])} if "sample" in kv else (arg or "all")
        elif kind in ("rates", "units"):
            d[kind] = False if arg in ("off", "false", "none") else _to_num(arg) if arg else True
        elif kind == "bold":
            if arg in ("off", "false", "none"):
                d["bold"] = False
            elif kv:
                b: dict[str, Any] = {}
                if "tr" in kv:
                    b["tr_ms"] = kv.pop("tr")
                if "baseline" in kv:
                    b["baseline_hz"] = _to_num(kv.pop("baseline"))
                b.update(kv)
                d["bold"] = b
            else:
                d["bold"] = arg or True
        elif kind == "samples":
            s: dict[str, Any] = {"neurons": {}}
            n = kv.pop("n", None)
            if "every" in kv:
                s["every"] = _to_num(kv.pop("every"))
            if "variables" in kv:
                s["variables"] = kv.pop("variables").split("+")
            for pop, ids in kv.items():
                s["neurons"][pop] = [_to_num(x) for x in ids.split("+")]
            if n is not None:
                s["neurons"]["*"] = _to_num(n)
            d["samples"] = s
        elif kind == "hdf5":
            d["hdf5"] = True
        elif kind == "chunks":
            d["chunk_columns"] = _to_num(arg)
        elif kind == "spike_buffer":
            d["spike_buffer_mb"] = _to_num(arg)
        else:
            d[kind] = arg
    return d


def _kv(arg: str) -> dict[str, str]:
    out = {}
    for part in filter(None, arg.split(",")):
        k, eq, v = part.partition("=")
        if eq:
            out[k] = v
    return out


def _to_num(s: str) -> Any:
    for conv in (int, float):
        try:
            return conv(s)
        except ValueError:
            pass
    return s


def expand_samples(spec: RecordSpec, network: Any) -> RecordSpec:
    """Replace a ``*`` entry of the samples (``--record samples:n=5``) by every population."""
    if spec.samples is None:
        return spec
    items = []
    for pop, v in spec.samples.neurons:
        if pop == "*":
            items += [(p.name, v) for p in network.populations
                      if p.name not in dict(spec.samples.neurons)]
        else:
            items.append((pop, v))
    s = SampleSpec(tuple(items), spec.samples.every, spec.samples.variables)
    return dataclasses.replace(spec, samples=s)


def check_record(spec: RecordSpec, network: Any, dt: float,
                 add: Callable[[str, Any, str], None], path: str = "record") -> None:
    """Problems that need the network and the time step: bins that are not whole steps,
    sampled populations or node ids that do not exist, BOLD without units."""
    for name, v in (("rates", spec.rates_ms), ("units", spec.units_ms),
                    ("bold.tr_ms", spec.bold_tr_ms)):
        if v is not None and abs(v / dt - round(v / dt)) > 1e-9 * max(1.0, v / dt):
            add(f"{path}.{name}", v, f"a multiple of the time step dt = {dt} ms")
    pops = {p.name: p for p in network.populations}
    if spec.samples is not None:
        for pop, chosen in spec.samples.neurons:
            if pop not in pops:
                add(f"{path}.samples.neurons.{pop}", chosen,
                    f"a population of the network ({', '.join(pops)})")
            elif isinstance(chosen, tuple) and max(chosen) >= pops[pop].size:
                add(f"{path}.samples.neurons.{pop}", list(chosen),
                    f"node ids < {pops[pop].size} (the population's size)")
    if spec.bold_tr_ms is not None and not any(p.units is not None for p in pops.values()):
        add(f"{path}.bold", spec.bold_tr_ms, "a network with units (regions or voxels); "
                                            "this one has none")



def resolve_record(base: RecordSpec | None, flags: Sequence[str] | None, network: Any,
                   dt: float, source: str | None = None) -> RecordSpec:
    """The record spec of a run: the configuration's (or the defaults), with ``--record``
    flags laid over it, validated against the network and dt; raises ConfigError naming
    ``--record`` or ``record`` and the offending value."""

    pr = Problems()
    spec = base if base is not None else RecordSpec()
    if flags:
        over = parse_record_flags(flags)
        parse_record(over, pr.add, "--record")  # problems named after the flag
        if pr.items:
            raise ConfigError(pr.items, source)
        merged = spec.to_dict()
        merged.update(over)
        spec = parse_record(merged, pr.add, "--record")
    spec = expand_samples(spec, network)
    check_record(spec, network, dt, pr.add, "--record" if flags else "record")
    if pr.items:
        raise ConfigError(pr.items, source)
    return spec


BYTES_PER_ROW = 24   # a dense series' time axis: start step, time (ms), 1/width (float64)


def physical_memory() -> int | None:
    """This machine's physical memory in bytes (None where the OS does not say)."""

    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return None


def check_duration(spec: RecordSpec, t_ms: float, dt_ms: float,
                   memory: int | None = None) -> str | None:
    """A problem with a run of ``t_ms`` (None: none), found before anything is built: more
    steps than int64 time stamps and float64 times can count exactly (2^53), or recorders
    whose time axes alone (``BYTES_PER_ROW`` per row: a row per bin of rates and unit rates,
    per BOLD TR and per sample) would take more than half of ``memory`` (default: this
    machine's), with the number of bytes stated."""
    steps = t_ms / dt_ms
    if not steps < 2.0 ** 53:
        return (f"{t_ms!r} ms -- expected fewer than 2^53 time steps of {dt_ms!r} ms "
                f"({steps:.3g} asked)")
    rows = 0.0
    for bin_ms in (spec.rates_ms, spec.units_ms, spec.bold_tr_ms):
        if bin_ms is not None:
            rows += math.ceil(t_ms / bin_ms)
    if spec.samples is not None:
        rows += steps / max(1, int(spec.samples.every))
    need = rows * BYTES_PER_ROW
    memory = physical_memory() if memory is None else memory
    if memory is not None and need > memory / 2:
        return (f"{t_ms!r} ms -- the recorders' time axes alone ({rows:.3g} rows) would take "
                f"{need:.3g} bytes, more than half of this machine's {memory:.3g} bytes of "
                "memory: record coarser bins (--record rates:BIN_MS, units:BIN_MS) or turn "
                "series off")
    return None
