"""Seams to the tools researchers hand a toy model to: devinterp's learning coefficient
(llc.py), SPD's decomposition target (spd.py) and SAELens's SAE format (saelens_sae.py)."""
