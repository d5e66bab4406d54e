"""Run one job in its own process: ``python -m vanotebook.jobs._run <job folder>``.

The service starts it in a new process group (so ABORT and an overrun end
it and everything it started); it reads ``job.json`` (pipeline and
parameters), writes progress lines to ``progress.txt`` and, at the end,
``outcome.json``: the result files, or the error a user can act on.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path


def main(folder: str) -> int:
    from .._errors import VanotebookInputError
    from ._registry import PIPELINES

    work = Path(folder)
    spec = json.loads((work / "job.json").read_text())
    progress = work / "progress.txt"

    def say(message: str) -> None:
        with progress.open("a") as f:
            f.write(message.replace("\n", " ")[:500] + "\n")

    outcome: dict
    try:
        pipeline = PIPELINES[spec["pipeline"]]
        values = {k: (str(work / v.removeprefix("upload:")) if v.startswith("upload:") else v)
                  for k, v in spec["parameters"].items()}
        params = pipeline.parse(values)
        (work / "results").mkdir(exist_ok=True)
        results = pipeline.run(params, work / "results", say)
        outcome = {"results": {k: str(Path(p).resolve()) for k, p in results.items()}}
    except VanotebookInputError as exc:  # the user can act on it: say it as it is
        outcome = {"error": str(exc)}
    except Exception as exc:
        traceback.print_exc()
        outcome = {"error": f"{type(exc).__name__}: {exc}"}
    tmp = work / ".outcome.json"
    tmp.write_text(json.dumps(outcome))
    tmp.replace(work / "outcome.json")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1]))
