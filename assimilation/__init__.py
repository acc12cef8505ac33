"""Data assimilation (hemodynamics, ensemble Kalman filters); see the assimilation issue."""
