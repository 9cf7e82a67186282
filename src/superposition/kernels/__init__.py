"""The numba kernels of the fused engine: data, forward, backward and Adam(W) compiled into
one CPU loop per workload.

  fused.py          toy models on fresh data, and the counter stream's numba draws
  dataset_fused.py  toy models on a finite training set (a ReLU output, a linear hidden layer)
  sae_fused.py      sparse autoencoders on a toy model's activations or a dictionary
"""
