"""Sweeps: grids of configs cut into shards, trained across processes or machines, resumed
after a crash.

  grid.py       a spec's axes and shards
  sweep.py      toy-model sweeps, and the spec, shards and results every sweep shares
  sae_sweep.py  SAE sweeps
"""
