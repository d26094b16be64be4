from tests.launchers.reference import reference  # noqa: F401 (the standalone torchrun run they compare with)
from tests.launchers.slurm_cluster import slurm  # noqa: F401 (the session's Slurm cluster)
