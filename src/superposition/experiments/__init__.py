"""Presets of `superposition reproduce NAME`: each trains the runs of one experiment."""
