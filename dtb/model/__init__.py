"""The model: what is simulated (network description, neuron models, configuration files,
what to record, the hemodynamic observable).  Nothing here runs a simulation."""
