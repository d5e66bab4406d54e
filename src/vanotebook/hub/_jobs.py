"""The gateway's additions to the job service's pipelines: publishing for others.

Importing this module extends ``publish`` (and the ``workflow``'s last
step) with ``to=shared`` (the gateway's shared archive) and ``to=vo`` (its
DaCHS server), through the publishing service as the job's owner: each job
gets a short-lived hub token of its owner that reaches that service only
(`vanotebook.hub._uws` makes it).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..jobs._pipelines import _publish as _to_own_archive
from ..jobs._registry import PIPELINES, Param, register

__all__: list[str] = []

TARGETS = ("archive", "shared", "vo")


def _publish(params: dict[str, Any], work: Path, say) -> dict[str, Path]:
    if params["to"] == "archive":
        return _to_own_archive(params, work, say)
    from ..io import parse_catalogue
    from ._publish import publish_catalogue

    say(f"publishing {params['name']} to the {'VO' if params['to'] == 'vo' else 'shared archive'}")
    done = publish_catalogue(parse_catalogue(params["catalogue"]), params["name"],
                             overwrite=params["overwrite"], description=params["description"],
                             vo=params["to"] == "vo")
    out = work / "published.json"
    out.write_text(json.dumps(done, indent=1))
    return {"published": out}


_TO = Param("str", "where: your own archive, the gateway's shared archive (everyone reads "
            "it), or the VO (the gateway's DaCHS: TAP and cone search)", "archive",
            choices=TARGETS)
_base = PIPELINES["publish"]
register(replace(_base, params={**_base.params, "to": _TO}, run=_publish))
_workflow = PIPELINES["workflow"]
register(replace(_workflow, params={**_workflow.params,
                                    "publish_to": replace(_TO, doc="where to publish")}))
