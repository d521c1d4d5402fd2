"""Bridges to the field's tools, each behind an optional extra.

- ``nasflow.integrations.tensorboard`` (``pip install 'nasflow[tensorboard]'``): every
  trial's reported metrics as TensorBoard scalars; switched on with
  ``ExperimentConfig(tensorboard=True)``, viewed with ``nasflow tensorboard ID``.
- ``nasflow.integrations.mlflow`` (``pip install 'nasflow[mlflow]'``): one MLflow run per
  trial under one MLflow experiment.

Importing this package imports neither tool; each module imports its tool when used.
"""

from __future__ import annotations

__all__: list[str] = []
