"""Training: the loop, and the engines that run its steps.

  steps.py     what every engine shares: the stepper, chunks of steps, Adam's constants,
               the learning-rate schedule
  engines.py   which engine runs a job, each engine saying why it does not
  loop.py      the toy models' loop (restarts, warm start, early stop) and the reference engine
  compiled.py  the compiled engine (torch.compile, CUDA graphs on a GPU)
  dataset.py   finite training sets and their test sets
"""
