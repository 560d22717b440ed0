"""The MLflow schema: every tag, param, metric and artifact name slmscale writes or reads.

The one place these names are spelled (DESIGN.md "MLflow run schema").  Importing it costs nothing:
no mlflow import here.
"""

from __future__ import annotations

# ---- tags -------------------------------------------------------------------------------------
TAG_KIND = "slmscale.kind"  # "train" | "fit" | "eval"
TAG_TRIAL_KEY = "slmscale.trial_key"
TAG_GRID = "slmscale.grid"
TAG_FAILURE = "slmscale.failure_reason"
TAG_VERSION = "slmscale.version"
# The Ray Train job that trained a trial of a pack (resources.trials_per_job > 1, grid.packs)
# and when that job started (epoch ms): its start-up is shared by the trials it trained.
TAG_TRAIN_JOB = "slmscale.train_job"
TAG_TRAIN_JOB_STARTED = "slmscale.train_job_started"
KIND_TRAIN, KIND_FIT, KIND_EVAL = "train", "fit", "eval"

# ---- params (DESIGN.md "MLflow run schema") ---------------------------------------------------
PARAM_NAMES = (
    "model_size",
    "n_params",
    "n_params_total",
    "n_layers",
    "d_model",
    "n_heads",
    "tokens",
    "unique_tokens",
    "epochs",
    "batch_size",
    "context",
    "steps",
    "warmup_steps",
    "lr_max",
    "lr_min",
    "weight_decay",
    "tokenizer",
    "units_dataset",
    "seed",
)

# ---- metrics ----------------------------------------------------------------------------------
M_TRAIN_LOSS = "train_loss"
M_TEST_LOSS = "test_loss"
M_FLOPS = "flops"
M_LR = "lr"
M_TEST_LOSS_FINAL = "test_loss_final"
M_TOKENS_PER_SEC = "tokens_per_sec"
M_MFU = "mfu"
M_TOKENS_TRAINED = "tokens_trained"
M_UNIQUE_TOKENS_SEEN = "unique_tokens_seen"
# Downstream accuracies: benchmark name -> metric.
BENCHMARK_METRICS = {
    "sblimp": "sblimp_acc",
    "swuggy": "swuggy_acc",
    "topic_cloze": "topic_cloze_acc",
    "story_cloze": "story_cloze_acc",
}
DOWNSTREAM_METRICS = tuple(BENCHMARK_METRICS.values())

# ---- artifacts --------------------------------------------------------------------------------
ARTIFACT_TRIAL_CONFIG = "trial_config.json"
ARTIFACT_MODEL_DIR = "model"  # a save_pretrained directory (safetensors)
ARTIFACT_EVAL_DETAILS = "eval/breakdown.json"
ARTIFACT_FIT_DIR = "fit"

DEFAULT_DB = "mlflow.db"

# ---- fit runs (slmscale.kind=fit): params and artifacts -----------------------------------------
PARAM_FIT_SOURCE_EXPERIMENTS = "source_experiments"  # comma-separated experiment names
PARAM_FIT_FILTER = "filter"
PARAM_FIT_LAW = "law"
PARAM_FIT_HUBER_DELTA = "huber_delta"
PARAM_FIT_BOOTSTRAP = "bootstrap"
PARAM_FIT_N_RUNS_USED = "n_runs_used"
ARTIFACT_FIT_JSON = "fit.json"
ARTIFACT_FIT_RUN_IDS = "run_ids.json"  # every run id the fit used (too long for a param)

# --- the grid's parent run (one per grid and experiment; every trial run is nested under it) ---
KIND_GRID = "grid"
TAG_PARENT_RUN = "mlflow.parentRunId"  # MLflow's own nesting tag: the UI folds children under it
TAG_NOTE = "mlflow.note.content"  # MLflow's description field (runs and experiments)
TAG_SOURCE_NAME = "mlflow.source.name"  # the "Source" column
TAG_SOURCE_TYPE = "mlflow.source.type"
TAG_SOURCE_COMMIT = "mlflow.source.git.commit"
ARTIFACT_GRID_SPEC = "grid/spec.yaml"  # the spec as run (overrides applied)
ARTIFACT_GRID_TRIALS = "grid/trials.json"  # the dry-run rows of every trial
PARAM_GRID_OVERRIDES = "overrides"
PARAM_GRID_N_TRIALS = "n_trials"
M_GRID_DONE = "trials_done"
M_GRID_FAILED = "trials_failed"
M_GRID_LEFT = "trials_left"
DATASET_CONTEXT_TAG = "mlflow.data.context"  # a dataset input's role ("training")
TAG_SHARED_VIEW_PREFIX = "mlflow.sharedViewState."  # MLflow UI saved/shared runs-table views
TAG_FIT_KEY = "slmscale.fit_key"  # same sources, filter, law and settings = same fit run
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"  # which UI the experiment opens in
EXPERIMENT_KIND_TRAINING = "custom_model_development"  # "Model training": the runs table

# --- compute two ways, the device, the schedule (issues 26, 28, 29) ---
M_FLOPS_FULL = "flops_full"  # 6ND plus output layer and causal attention (model.flops_full)
PARAM_DEVICE = "device"  # what the trial trained on: "cpu" or e.g. "NVIDIA H100 80GB HBM3 x 8"
TAG_DEVICES = "slmscale.devices"  # every device a resumed trial ran on, when more than one
TAG_SCHEDULE = "slmscale.schedule"  # "cosine" | "wsd (1-sqrt, 0.2)"
TAG_TRUNK = "slmscale.trunk"  # a WSD run's trunk (the key its branch shares with its size)
# --- fit runs: nesting, verdicts, seeds and compute (laws helper, issues 26/27) ---
KIND_STUDY = "study"  # an experiment-level parent for fits that span several grids
N_ITEMS_SUFFIX = "_n_items"  # `<metric>_n_items`: items a benchmark was scored on (chance test)
# --- what the grid's saved view shows (console/MLflow helper, issue 27) ---
# Rounded text copies of a trial's final metrics, as tags named like the metric, with their
# decimals: MLflow's runs table prints metric values with every float digit.
ROUNDED_METRICS = {M_TEST_LOSS_FINAL: 4, **{m: 3 for m in DOWNSTREAM_METRICS}}
ARTIFACT_GRID_TABLE = "grid/trials.csv"  # every trial of the grid, rounded, on its parent run
KIND_TRUNK = "trunk"  # a WSD trunk's run (constant LR; its branches are the grid's trials)
M_TRUNK_STEPS = "trunk_steps"  # how far a trunk has been trained (it grows with the grid)
TAG_PENDING = "slmscale.pending"  # why a started trial has no workers yet (cluster_state)
TAG_BRANCH_STEP = "slmscale.branch_step"  # a WSD branch: the trunk's step it starts from
M_FLOPS_TRAINED = "flops_trained"  # what the run's own training cost (a branch: its cooldown)
