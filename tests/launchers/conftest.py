from tests.launchers.slurm_cluster import slurm  # noqa: F401 (the session's Slurm cluster fixture)
