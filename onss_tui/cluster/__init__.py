"""Running a recipe over a Slurm cluster: the jobs onss submits (:mod:`onss_tui.cluster.slurm`)."""
