"""Every kind of record the harness writes: its schema id, its JSON Schema (a file here), and the file
it goes to. The one table of them: code reads ids and file names from here and never spells them."""

TRIAL_SCHEMA = "harness.trial/1"  # one trial: config, seeds, metrics, fingerprints, environment
STUDY_SCHEMA = "harness.study/1"  # a study's manifest: what it planned
SUMMARY_SCHEMA = "harness.summary/1"  # a study's summary: per-condition statistics and verdicts
SPEED_SCHEMA = "harness.speed/1"  # make speed's figures
DIVERGENCE_SCHEMA = "harness.divergence/1"  # where two traced runs first differ
COMPARE_SCHEMA = "harness.compare/1"  # two tuned configs compared over seeds
DOCTOR_SCHEMA = "harness.doctor/1"  # the doctor's verdicts on a user's script
OBJECTIVE_RUN_SCHEMA = "harness.objective_run/1"  # one seeded call of a user's Optuna objective (reeval --objective)
OBJECTIVE_REEVAL_SCHEMA = "harness.objective_reeval/1"  # reeval --objective: the calls against the tuned value
COST_SCHEMA = "harness.cost/2"  # a study's determinism cost: two settings' seconds in interleaved blocks, per unit
TRACE_SCHEMA = "harness.trace/1"  # FingerprintCallback's JSON lines (a line format: no JSON Schema file)

SCHEMA_FILES = {TRIAL_SCHEMA: "trial.schema.json", STUDY_SCHEMA: "study.schema.json",
                SUMMARY_SCHEMA: "summary.schema.json", SPEED_SCHEMA: "speed.schema.json",
                DIVERGENCE_SCHEMA: "divergence.schema.json", COMPARE_SCHEMA: "compare.schema.json",
                DOCTOR_SCHEMA: "doctor.schema.json", OBJECTIVE_RUN_SCHEMA: "objective_run.schema.json",
                OBJECTIVE_REEVAL_SCHEMA: "objective_reeval.schema.json", COST_SCHEMA: "cost.schema.json"}

# The files of a study directory.
TRIALS_FILE = "trials.jsonl"
# Trials a dead worker process took with it (killed, out of memory): not results, so not in TRIALS_FILE,
# and a resume runs them again. One JSON line each: trial_key, condition, repeat, reason, created_at.
LOST_FILE = "lost.jsonl"
STUDY_FILE = "study.json"
SUMMARY_FILE = "summary.json"
COST_FILE = "cost.json"
# Each trial's per-example predictions, one .npz per distinct content, named by its SHA-256 and referenced
# from the trial's record (outputs.per_example; harness/studies/per_example.py).
PER_EXAMPLE_DIR = "per_example"
# Its arrays (numpy.load(file)[name]), one value per test example: the predicted class (uint8, tasks of at
# most 256 classes) and whether it was right (bool).
PREDICTED_CLASSES_ARRAY = "test_predicted_classes"
CORRECT_ARRAY = "test_correct"
# The files of the other programs' output directories.
SPEED_FILE = "speed.json"
DIVERGENCE_FILE = "divergence.json"
COMPARE_FILE = "compare.json"
DOCTOR_FILE = "doctor.json"
# reeval --objective's directory: one record per call of the objective, its summary in SUMMARY_FILE, and
# what the objective itself printed.
OBJECTIVE_RUNS_FILE = "runs.jsonl"
OBJECTIVE_LOG_FILE = "objective_output.log"
# The files holding records: a file a user names for other output (gate's --junit_xml) is never one of them.
RECORD_FILES = (TRIALS_FILE, LOST_FILE, STUDY_FILE, SUMMARY_FILE, COST_FILE, SPEED_FILE, DIVERGENCE_FILE,
                COMPARE_FILE, DOCTOR_FILE, OBJECTIVE_RUNS_FILE)
