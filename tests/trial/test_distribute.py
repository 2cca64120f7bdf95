"""`--strategy=mirrored` on two logical CPU devices: trains, records its replicas, repeats bit for bit."""

import json
import os
import subprocess
import sys
import textwrap

from conftest import REPO

# Logical devices must be set before TF's runtime starts: a fresh process.
SCRIPT = textwrap.dedent("""
    import json
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from harness.platform import environment
    from harness.trial.config import load_benchmark
    from harness.studies.records import make_trial_record, schema_errors
    from harness.trial.seeds import SeedSet
    from harness.trial.train import inputs_identity, run_trial

    config = load_benchmark("digits_mlp", epochs=3, max_train_examples=601, dropout_rate=0.2, strategy="mirrored")
    seeds = SeedSet.from_base(0)
    first, second = run_trial(config, seeds), run_trial(config, seeds)
    alone = run_trial(config.replace(strategy="none"), seeds)
    record = make_trial_record(config=config, seeds=seeds, condition="control", repeat=0, study_id="s",
                               result=first, environment=environment.capture(), inputs=inputs_identity(config))
    print(json.dumps({"status": first.status, "replicas": first.outputs.get("replicas"),
                      "strategy": first.outputs.get("strategy"), "schema_errors": schema_errors(record),
                      "same_bits": first.fingerprints == second.fingerprints,
                      "accuracy": first.metrics["test_accuracy"], "alone": alone.metrics["test_accuracy"]}))
""")


def test_mirrored_strategy_trains_records_replicas_and_is_bitwise_reproducible():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["status"]["code"] == "ok" and out["schema_errors"] == []
    assert (out["strategy"], out["replicas"]) == ("mirrored", 2)
    assert out["same_bits"] is True  # op determinism on: two replicas, same bits every time
    # It learns like one device (not the same bits: each replica draws dropout for its slice).
    assert out["accuracy"] > 0.7 and abs(out["accuracy"] - out["alone"]) < 0.1
