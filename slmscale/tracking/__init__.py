"""The MLflow edge: the schema (the one place MLflow names are spelled), run identity, reading runs.

Platform edge.  `mlflow` is imported lazily inside functions so that the schema constants can be
read by anyone (the pure core never calls this module, but the CLI and tests read the names).

Run identity is ours, not MLflow's: a trial's `slmscale.trial_key` tag maps it to exactly one run
(slmscale.tracking.runs).
"""

from slmscale.tracking.runs import (  # noqa: F401
    TrialRun,
    find_trial_runs,
    finish_run,
    log_metrics,
    open_trial_run,
)
from slmscale.tracking.schema import *  # noqa: F401,F403
from slmscale.tracking.store import (  # noqa: F401
    client,
    default_tracking_uri,
    get_experiment_id,
    get_or_create_experiment,
    metric_history,
    resolve_tracking_uri,
    runs_dataframe,
    runs_table,
)
