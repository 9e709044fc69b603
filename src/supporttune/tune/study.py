"""The layout of a study directory and the study's bookkeeping (finished and interrupted trials).

One owner for the file names that the search (search.py) writes and the report (report.py) reads.
"""

from __future__ import annotations

from pathlib import Path

STUDY_DB = "study.db"
CONFIG = "tune.yaml"
TRIALS = "trials"
RESULTS = "tune_results.json"
LOCK = ".tune.lock"
INTERRUPTED = "interrupted"  # study user attribute: numbers of the trials that were cut short
RETRY_OF = "retry_of"  # trial user attribute: the interrupted trial whose parameters it tries again
ALONE = "alone"  # trial user attribute: run with no other trial on the GPU (gpu_share.py)
OUT_OF_MEMORY = "out_of_memory"  # trial user attribute: the error that made it interrupted, to be run alone


def trial_dir(out: Path, number: int) -> Path:
    return Path(out) / TRIALS / f"trial-{number:04d}"


def interrupted(study) -> set[int]:
    return set(study.user_attrs.get(INTERRUPTED, []))


def mark_interrupted(study, number: int) -> None:
    from optuna.trial import TrialState

    study.set_user_attr(INTERRUPTED, sorted(interrupted(study) | {number}))
    study.tell(number, state=TrialState.FAIL, skip_if_finished=True)


def finished(study) -> list:
    """Trials that count towards --trials: complete, pruned, or failed on their own (not interrupted)."""
    from optuna.trial import TrialState

    cut = interrupted(study)
    done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return [t for t in study.get_trials(deepcopy=False, states=done) if t.number not in cut]

