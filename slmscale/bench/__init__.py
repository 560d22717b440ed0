"""`slmscale bench`: performance figures, each measured beside its baseline in the same run.

Pure core plus the optional Ray Train section: nothing here imports ray or mlflow at module level,
so `slmscale bench --gpu` runs on a GPU machine that has neither installed.
"""
