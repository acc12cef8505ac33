"""Plan how a brain is split over P ranks, before anything is simulated.

``plan(spec, ranks)`` cuts a ``BrainSpec`` into *atoms*, weighs each atom by its compute
cost, estimates the spike traffic between atoms, assigns atoms to ranks with a graph
partitioner, and reports per-rank load and traffic and the message counts of direct and
two-level routing.  ``dtb partition`` (``add_partition_parser``/``run_partition``) prints
the same figures, so a user can size a cluster job before submitting it.

Atoms
    The atoms are the spec's *units* (regions, or grey-matter voxels): a unit kept whole
    on one rank keeps its unit-local synapses local, so only long-range synapses cross
    ranks (and the exchange window is the shortest tract delay, not the local delay).
    Relative to the mean rank cost ``T = total / P``:

    * a unit of cost c > ``max_atom * T`` (default T / 2) is cut into *blocks*, each
      holding the same share of every family of the unit: cut at fractions q_j of the
      unit, block j holds neurons ``round(q_j n) .. round(q_{j+1} n) - 1`` of each
      family's n neurons in it (``Atoms.first``, ``Atoms.sizes``).  If c >= T, the first
      ``floor(c / T)`` blocks cost T each and are *dedicated*: each gets a rank of its
      own, so a large unit spans as few ranks as it can.  The rest of the unit (or all of
      a unit lighter than T) is cut into ``ceil(rest / (max_atom T))`` equal blocks.  A
      block's unit-local inputs then partly come from other ranks; that traffic is
      counted, and the window shrinks to the unit-local delay.
    * consecutive light units of the same region are merged into one atom while the
      merged cost stays under ``chunk * T`` (default T / 32), so that a 200,000-voxel
      brain on 16 ranks is partitioned as a few hundred atoms, not 200,000; merging never
      crosses a region boundary and never breaks a unit.
    * if the atoms are too coarse to balance (the largest rank still above ``balance``
      times the mean after partitioning), ``max_atom`` and ``chunk`` are halved and the
      partition redone, at most ``MAX_REFINE`` times.

Cost (arbitrary units, about "operations per second of model time"; ``Costs``)
    ``cost = neurons * update * 1000 / dt_ms + synapses * synapse
    + synapses * rate_hz * event``: one unit per neuron update (10,000 per neuron per
    second at dt = 0.1 ms), one per stored incoming synapse (a memory term) and one per
    synaptic event (each incoming synapse sees ``rate_hz`` spikes a second).  With the
    DTB's in-degree of 100 and 5 Hz a neuron costs 10,000 + 100 + 500, so the neuron
    update dominates; with cortical in-degrees (10^4) the synaptic terms would.

Traffic (spikes per second that must be *sent* from one rank to another)
    Expected synapse counts follow the rules exactly: a long-range rule gives a target
    unit u of region h ``k_u n_u`` synapses, their source region v drawn with probability
    ``p_h(v)`` (the connectome row of h, restricted to regions where the source family
    has neurons, normalised) and the source neuron uniformly among the source family's
    neurons of v; a unit-local rule draws its ``k_u n_u`` sources uniformly in the same
    unit.  A spike crosses to a rank once if *any* of the neuron's targets is there, not
    once per synapse: a pool of ``n`` equivalent source neurons with ``s`` expected
    synapses onto a rank is expected to need ``n (1 - exp(-s / n))`` of its neurons sent
    there (each neuron's synapse count onto the rank is Poisson with mean s/n).  The
    neurons of one family and region on one rank form such a pool exactly, because
    long-range sources are uniform within a region; a cut unit's blocks add their
    unit-local synapses to the same neurons' count.  Traffic = that number times the
    firing rate (``rate_hz``, default 5 Hz, the same for every neuron), 8 bytes a spike.
    ``cut`` = spikes sent to other ranks / spikes delivered to ranks (own rank included:
    every spike is needed by its own rank and by each other rank with a target);
    ``cut_synapses`` = the fraction of synapses whose source is on another rank.
    tests/test_partition.py checks both, and the per-rank figures, against every
    synapse of a generated network.

Assignment
    ``method="metis"``: dedicated blocks get a rank each; the other atoms are partitioned
    over the remaining ranks by METIS k-way (pymetis) with vertex weight = cost and
    edge weight = the traffic two atoms exchange (both ways) plus, between atoms of one
    region, the traffic they save by sharing a rank (their common sources are then sent
    once).  METIS gets a tolerance of ``balance - 1`` (3 %); a greedy pass then moves (or
    swaps) atoms off ranks still above ``balance`` times the mean, choosing the move that
    loses the least traffic, and ranks are numbered in unit order so that a node's
    ranks hold neighbouring units.  All atom pairs are edges up to ``max_edges``; beyond,
    each edge class (a region pair, a region, a cut unit) gets a share of ``max_edges``
    by its traffic and its pairs are sampled with probability proportional to the two
    atoms' traffic, each sample carrying total / samples, so every cut keeps its expected
    weight (see ``atom_graph``).  The report always uses the exact model.
    Why METIS rather than KaHIP: both are maintained and ship manylinux wheels (pymetis,
    kahip).  On these graphs METIS took 1.3 s for 256 parts of the 8,230-atom voxel
    graph where KaHIP's "fast" preset took 11 s and "eco" 224 s, for cuts within 0.1 %
    of METIS's (model cut 0.9369 METIS, 0.9376 fast, 0.9367 eco); on the 16-rank region
    graph KaHIP "strong" cut 0.5 % less in 200 times the time.  KaHIP also takes 32-bit
    weights only, too few for 10^5 atoms with fine cost resolution.  METIS partitions
    165,000 atoms into 14,012 parts in about half a minute (benchmarks/partition.py).
    ``method="contiguous"``: units in order, the cumulative cost cut at every multiple
    of T (a unit straddling a cut is cut there) — the baseline a graph partitioner must
    beat; it balances exactly but cuts a unit at almost every rank boundary.

Messages (per rank per exchange window)
    A rank sends one message per window to every rank it has a synapse onto (even an
    empty one: receivers must know when a window is complete) and receives one from every
    rank with a synapse onto it; the expected count of each message is the probability
    ``1 - exp(-s)`` that at least one of the ``s`` expected synapses it serves exists.
    ``direct``: messages = sends + receives.  ``two-level``: ranks are grouped into nodes
    of G consecutive ranks (default ``round(sqrt(P))``); the first rank of each group is
    its relay.  Inside a group ranks exchange directly; a spike needed in another group
    goes rank -> own relay -> the other group's relay -> ranks there, one message per
    window for each (relay, relay) pair of groups with any synapse between them, and the
    member <-> relay messages carry intra-group and relayed spikes together
    (``message_counts`` is the reference definition).  With dense long-range
    connectivity a member handles 2 (G - 1) messages and a relay 2 (G - 1) +
    2 (P / G - 1): O(sqrt P) either way, against 2 (P - 1) direct.  The window is the
    smallest delay of a synapse that crosses ranks (``window_ms``); direct peer counts
    are exact up to ``EXACT_PEERS_MAX`` ranks and estimated from ``PEER_SAMPLE`` sampled
    target ranks beyond (everything else stays exact).
"""

from dtb.partition.assign import contiguous_atoms
from dtb.partition.evaluate import _p as _p
from dtb.partition.evaluate import _rank_model as _rank_model
from dtb.partition.evaluate import message_counts
from dtb.partition.graph import atom_graph, compactness
from dtb.partition.model import (
    BYTES_PER_SPIKE,
    DEFAULT_RATE_HZ,
    MAX_RANKS,
    MAX_REFINE,
    METHODS,
    METIS_SCALE,
    ROUTINGS,
    Atoms,
    Costs,
    make_atoms,
)
from dtb.partition.model import _model as _model
from dtb.partition.planner import Plan, plan

__all__ = [
    "BYTES_PER_SPIKE", "DEFAULT_RATE_HZ", "MAX_RANKS", "MAX_REFINE",
    "METHODS", "METIS_SCALE", "ROUTINGS", "Atoms", "Costs", "Plan",
    "atom_graph", "compactness", "contiguous_atoms", "make_atoms", "message_counts", "plan",
]
