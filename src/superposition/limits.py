"""The largest and smallest values a config may hold, shared by every config and generator."""

# Sizes are indices in the fused engine: beyond this they overflow long before memory runs out.
MAX_SIZE = 2**31 - 1
# feature_probability and importance are [instance][feature] lists: this many values at most
MAX_VALUES = 20_000_000
# The rarest a feature can be: the data stream compares 24-bit uniforms with p, so any
# smaller p would be drawn at this probability all the same.
MIN_PROBABILITY = 2.0**-24
