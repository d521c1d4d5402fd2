"""One instance of every message, as the docs show them."""

from __future__ import annotations

from nasflow._types import TrialError, TrialState
from nasflow.protocol import (
    Ack,
    Bye,
    Cancel,
    Capacity,
    Checkpoint,
    ErrorMessage,
    FinalMetric,
    Heartbeat,
    HeldTrial,
    Hello,
    Message,
    Metric,
    Role,
    RunTrial,
    Setup,
    SetupFailed,
    Submit,
    TrialEnded,
    TrialRef,
    TrialStarted,
    Welcome,
)

EXP = "exp-20250101-0001"
ERROR = TrialError(type="ValueError", message="lr must be > 0", traceback="Traceback ...")

EXAMPLES: list[Message] = [
    Hello(
        role=Role.WORKER,
        session="worker-3f2a9c",
        peer_session="manager-77b1e0",
        last_seq=41,
        resend_from=18,
        running=(TrialRef(experiment_id=EXP, trial_id=12, attempt=0),),
    ),
    Hello(role=Role.EXPERIMENT, session="experiment-5d0c41"),
    Welcome(session="manager-77b1e0", last_seq=17, resend_from=42),
    Ack(seq=57),
    ErrorMessage(code="sequence", message="expected seq 8, got 10", offending_type="metric",
                 offending_seq=10),
    Bye(reason="experiment finished"),
    Heartbeat(),
    Setup(experiment_id=EXP, payload=b"\x80\x05cloudpickle bytes", concurrency=4,
          trial_timeout=3600.0),
    Setup(experiment_id=EXP, payload=b"\x80\x05"),
    SetupFailed(experiment_id=EXP, error=TrialError(type="ModuleNotFoundError",
                                                    message="No module named 'mymodels'")),
    Submit(experiment_id=EXP, trial_id=12, sample={"stem/width": 32, "block0/op": "conv3x3"}),
    RunTrial(experiment_id=EXP, trial_id=12, attempt=1, sample={"depth": 3, "skip": [0, 2]}),
    Cancel(experiment_id=EXP, trial_id=12, state=TrialState.EARLY_STOPPED, reason="median rule"),
    Capacity(slots=4),
    Capacity(slots=2, held=(HeldTrial(trial_id=12, attempt=0),
                            HeldTrial(trial_id=14, attempt=1, queued=True))),
    TrialStarted(experiment_id=EXP, trial_id=12, time=1735689600.25),
    Metric(experiment_id=EXP, trial_id=12, step=3, value=0.8125, time=1735689601.5),
    Metric(experiment_id=EXP, trial_id=12, step=4, value={"acc": 0.83, "loss": 0.41},
           time=1735689602.5),
    FinalMetric(experiment_id=EXP, trial_id=12, value=0.9, time=1735689700.0),
    Checkpoint(experiment_id=EXP, trial_id=12, path="trials/12/ckpt-4.pt", step=4,
               time=1735689650.0),
    TrialEnded(experiment_id=EXP, trial_id=12, state=TrialState.SUCCEEDED, time=1735689700.5),
    TrialEnded(experiment_id=EXP, trial_id=13, attempt=2, state=TrialState.FAILED, error=ERROR,
               time=1735689800.0),
]
