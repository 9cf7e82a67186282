"""What is measured on trained weights.

  metrics.py   per instance: losses, feature norms, superposition, dimensionality
  geometry.py  naming the polytopes the features form
  theory.py    expected losses, for the phase diagrams
  recovery.py  directions learned against known ones (an SAE's scores)
"""
