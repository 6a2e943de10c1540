"""lace_jax.runs: the work the CLIs ask for — sampling and editing over a world in resumable chunks, sweeps,
scoring by a judge, and the pictures people look at."""
