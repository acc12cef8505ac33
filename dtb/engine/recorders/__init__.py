"""The recorders of a run, one small object per observable, each a :class:`Recorder`:

- :class:`PopulationCounts` (``counts``): spikes per population, for the manifest;
- :class:`SpikeOutput` (``spikes``): the SONATA spike parts and ``spikes.h5``;
- :class:`RateSeries` (``rates``): ``population_rate`` and ``unit_rate``;
- :class:`StateSamples` (``samples``): ``V`` and ``syn0``..``syn3`` of chosen neurons;
- :class:`BoldRecorder` (``bold``): BOLD per unit, driven by the unit counts.

``dtb.engine.recording.Recording`` builds them from a RecordSpec, owns the one
``SeriesStore`` the dense series share, and drives them (the calls in ``base``).
"""

from dtb.engine.recorders.base import BaseRecorder, Recorder, Span, Writer
from dtb.engine.recorders.bold import BoldRecorder, bold_recorder
from dtb.engine.recorders.counts import PopulationCounts
from dtb.engine.recorders.rates import RateSeries, population_rates, unit_rates
from dtb.engine.recorders.samples import StateSamples
from dtb.engine.recorders.spikes import SpikeOutput

__all__ = ["BaseRecorder", "BoldRecorder", "PopulationCounts", "RateSeries", "Recorder", "Span",
           "SpikeOutput", "StateSamples", "Writer", "bold_recorder", "population_rates",
           "unit_rates"]
