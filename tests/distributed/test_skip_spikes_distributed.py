"""--optimizer.skip_spikes under 2 gloo processes: a spike in one rank's share of the batch is seen by both
(the decision uses the globally reduced loss and gradient norm), so both skip the same steps and neither
moves its parameter shards. The run is shared_runs.py's "spikes2" (spikes injected by parallel_driver.py on
rank 1 only, at steps 3 and 6)."""

import json


def test_both_ranks_skip_the_step_that_spiked_on_one(shared_runs):
    ranks = [json.loads((shared_runs / f"spikes2.rank{r}.json").read_text())["spikes"] for r in (0, 1)]
    for record in ranks:
        assert [int(s) for s, row in record.items() if row["skipped"]] == [3, 6]
        for step in (3, 6):
            assert record[str(step)]["params"] == record[str(step - 1)]["params"]
            assert record[str(step + 1)]["params"] != record[str(step)]["params"]
