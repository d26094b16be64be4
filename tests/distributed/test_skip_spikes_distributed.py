"""--optimizer.skip_spikes under 2 gloo processes: a spike in one rank's share of the batch is seen by both
(the decision uses the globally reduced loss and gradient norm), so both skip the same steps and neither
moves its parameter shards."""

import json
import subprocess
import sys
from pathlib import Path

import yaml

from olmo_fn.config_io import config_to_dict
from tests.train.conftest import tiny_config

DRIVER = Path(__file__).with_name("spike_driver.py")
ROOT = Path(__file__).resolve().parents[2]


def test_both_ranks_skip_the_step_that_spiked_on_one(tmp_path):
    cfg = tiny_config(tmp_path, max_duration="8", eval_interval=None, save_interval_unsharded=None)
    cfg.optimizer.skip_spikes, cfg.optimizer.skip_spikes_window, cfg.optimizer.skip_spikes_min_values = (
        True,
        8,
        4,
    )
    config = tmp_path / "spiky.yaml"
    config.write_text(yaml.safe_dump(config_to_dict(cfg)))
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    result = subprocess.run([*launch, str(DRIVER), str(config), str(tmp_path), "1", "3=inf", "6=30"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for record in ranks:
        assert [int(s) for s, row in record.items() if row["skipped"]] == [3, 6]
        for step in (3, 6):
            assert record[str(step)]["params"] == record[str(step - 1)]["params"]
            assert record[str(step + 1)]["params"] != record[str(step)]["params"]
