"""Kubeflow Pipelines (KFP v2): components that run the platform's steps in the platform image,
and a pipeline joining them. `pipeline.py` imports only kfp; `steps.py` is the platform side."""
