"""The engine: instantiate a network on this process (build), run it in windows
(simulation), decompose it over ranks (context, decomposition, exchange), on CPU or GPU
(gpu), recording what the run asks for (recording: the composite over recorders)."""
