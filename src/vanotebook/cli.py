"""The ``vanotebook`` command."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _install_aladin_lite() -> None:
    """Install Aladin Lite (npm) for the HiPS viewer once; the gateway runs without it."""
    import subprocess

    from .archive._viewer import ALADIN_CACHE, aladin_lite_path

    try:
        aladin_lite_path()
        return
    except RuntimeError:
        pass
    npm = shutil.which("npm")
    if npm is None:
        print("warning: npm not found; the HiPS viewer needs Aladin Lite", file=sys.stderr)
        return
    print(f"installing Aladin Lite (npm) into {ALADIN_CACHE} ...", flush=True)
    ALADIN_CACHE.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([npm, "install", "--silent", "--prefix", str(ALADIN_CACHE),
                           "aladin-lite@3.8"], check=False)
    if done.returncode:
        print("warning: Aladin Lite could not be installed; the HiPS viewer will say how",
              file=sys.stderr)


def _demo_data(args: argparse.Namespace) -> int:
    from .sky import write_demo_data

    t0 = time.perf_counter()

    def say(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.1f} s] {msg}", flush=True)

    kwargs = {"seed": args.seed, "size": args.size, "n_catalogue": args.catalogue_rows,
              "n_spectra": args.spectra, "overwrite": args.overwrite, "progress": say}
    if args.small:
        kwargs.update(size=min(args.size, 0.5), n_catalogue=min(args.catalogue_rows, 20_000),
                      n_spectra=args.spectra or 5_000)
    prov = write_demo_data(args.directory, **kwargs)
    manifest = json.loads((Path(args.directory) / "manifest.json").read_text())
    _summarise(manifest, Path(args.directory), time.perf_counter() - t0)
    print(f"provenance: {Path(args.directory) / 'provenance.json'} (digest {prov.digest[:12]})")
    return 0


def _summarise(manifest: dict, directory: Path, seconds: float) -> None:
    from astropy.table import Table

    files = manifest["files"]
    total = sum(f["bytes"] for f in files)
    print(f"\nwrote {len(files)} files, {total / 1e6:.1f} MB, to {directory} in {seconds:.1f} s")
    for key in manifest["parameters"]["surveys"]:
        truth = Table.read(directory / "truth" / f"{key}_sources.ecsv")
        tiles = [f for f in files if f.get("survey") == key and f["kind"] == "image"]
        seen = truth[truth["in_survey"]]
        print(f"  {key:7s} {len(tiles)} tiles, {len(seen)} sources in view "
              f"({int(seen['extended'].sum())} extended), unit {truth.meta['unit']}")
    n = manifest["parameters"]["n_catalogue"]
    print(f"  catalogues: left and right, {n:,} rows each")
    spectra = next(f for f in files if f["kind"] == "spectra")
    print(f"  spectra: {spectra['description']}")


def _worker(args: argparse.Namespace) -> int:
    from .cluster import gpu_count, worker_command

    gpus = gpu_count() if args.gpus is None else args.gpus
    extra = ["--host", args.host, "--dashboard-address", f"{args.host}:0"]
    if args.local_directory:
        extra += ["--local-directory", args.local_directory]
    cmd = worker_command(args.scheduler, nthreads=args.nthreads, memory_limit=args.memory_limit,
                         name=args.name, gpus=gpus, extra=extra)
    print(f"vanotebook worker: {gpus} GPU(s); exec {' '.join(cmd[1:])}", flush=True)
    os.execv(cmd[0], cmd)
    return 1  # pragma: no cover - exec does not return


def _rerun(args: argparse.Namespace) -> int:
    from ._errors import VanotebookInputError
    from .provenance import Provenance, rerun

    record = Path(args.record)
    if (record / "index.duckdb").is_file():  # an archive: one of its ingestions
        from .archive import Archive

        if args.catalogue is None and args.ingest is None:
            raise VanotebookInputError("record", "with an archive, --catalogue NAME or "
                                       "--ingest ID", str(record))
        prov = Archive(record, create=False).provenance(args.catalogue, ingest=args.ingest)
    else:
        prov = Provenance.read(record)
    print(f"vanotebook rerun: {prov.activity} from {len(prov.inputs)} recorded inputs "
          f"into {args.output} ...", flush=True)
    t0 = time.perf_counter()
    new = rerun(prov, args.output)
    print(f"re-ran {new.activity} in {time.perf_counter() - t0:.1f} s: {len(new.outputs)} "
          "outputs, same sha256 as recorded", flush=True)
    return 0


def _gateway(args: argparse.Namespace) -> int:
    import signal
    import subprocess
    from importlib.resources import files

    from .hub import proxy_command

    if proxy_command() is None:
        prefix = Path.home() / ".cache" / "vanotebook" / "chp"
        print(f"installing configurable-http-proxy (npm) into {prefix} ...", flush=True)
        npm = shutil.which("npm")
        if npm is None:
            print("error: npm is needed to install configurable-http-proxy", file=sys.stderr)
            return 2
        prefix.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "install", "--silent", "--prefix", str(prefix),
                        "configurable-http-proxy"], check=True)
    _install_aladin_lite()
    env = dict(os.environ)
    for key, value in (("VANOTEBOOK_HUB_PORT", args.port), ("VANOTEBOOK_WORKERS", args.workers),
                       ("VANOTEBOOK_STATE_DIR", args.state_dir),
                       ("VANOTEBOOK_ADMIN_PASSWORD", args.admin_password)):
        if value is not None:
            env[key] = str(value)
    state = Path(env.get("VANOTEBOOK_STATE_DIR", Path.home() / ".vanotebook" / "hub"))
    state.mkdir(parents=True, exist_ok=True)
    config = files("vanotebook.hub").joinpath("jupyterhub_config.py")
    hub = shutil.which("jupyterhub") or str(Path(sys.executable).with_name("jupyterhub"))
    port = env.get("VANOTEBOOK_HUB_PORT", "8000")
    admins = env.get("VANOTEBOOK_ADMIN_USERS", "admin")
    print(f"\nvanotebook gateway: http://127.0.0.1:{port}/\n"
          "  log in with a user name of your choice and a password of at least 8 characters:\n"
          "  the first login of a name sets its password (each user gets a unix account\n"
          f"  vn-<name>); admins ({admins}) use the password printed below at the first start\n"
          "  (or VANOTEBOOK_ADMIN_PASSWORD)\n"
          f"  dashboards: http://127.0.0.1:{port}/services/dashboards/\n"
          f"  Dask dashboard: http://127.0.0.1:{port}/services/dask/status\n"
          "  Ctrl-C stops everything.\n", flush=True)
    proc = subprocess.Popen([hub, "-f", str(config)], cwd=state, env=env)

    def _stop(_signum, _frame):  # SIGTERM (kill, a service manager) stops it as Ctrl-C does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        print("vanotebook gateway stopped.")
        return 0


def _info(args: argparse.Namespace) -> int:
    from .cluster import SCHEDULER_ENV, gpu_count, resolve_device
    from .provenance import software_versions

    for name, version in software_versions().items():
        print(f"{name:12s} {version}")
    print(f"{'GPUs':12s} {gpu_count()}  (device='auto' -> {resolve_device('auto')})")
    scheduler = os.environ.get(SCHEDULER_ENV) or "none (connect() starts a LocalCluster)"
    print(f"{'scheduler':12s} {scheduler}")
    return 0


def _job(args: argparse.Namespace) -> int:
    from .jobs import PIPELINES, JobClient, JobError

    if args.action == "pipelines":
        for name, spec in PIPELINES.items():
            print(f"{name}: {spec.doc}")
            for key, param in spec.params.items():
                unit = f" [{param.unit}]" if param.unit else ""
                need = "required" if param.required else f"default {param.default!r}"
                print(f"    {key} ({param.kind}{unit}, {need}): {param.doc}")
            print(f"    results: {', '.join(spec.results)}")
        return 0
    client = JobClient(args.url, token=args.token)
    if args.action == "list":
        for job in client.jobs(args.ref, phase=args.phase, last=args.last):
            print(f"{job.pipeline}/{job.id}  {job.phase}  {job.url}")
        return 0
    if args.action == "submit":
        if args.ref not in PIPELINES:
            print(f"vanotebook job: no pipeline {args.ref!r} ({', '.join(PIPELINES)})",
                  file=sys.stderr)
            return 2
        params: dict[str, Any] = {}
        for item in args.params:
            key, sep, value = item.partition("=")
            if not sep:
                print(f"vanotebook job: expected name=value, got {item!r}", file=sys.stderr)
                return 2
            spec = PIPELINES[args.ref].params.get(key)
            if spec is not None and spec.kind == "files" and key in params:
                params[key] = [*params[key], value] if isinstance(params[key], list) \
                    else [params[key], value]
            else:
                params[key] = value
        try:
            job = client.submit(args.ref, **params)
        except ValueError as exc:
            print(f"vanotebook job: {exc}", file=sys.stderr)
            return 2
        print(job.url, flush=True)
        if args.no_wait:
            return 0
    else:
        job = client.job(args.ref)
    if args.action == "show":
        print(f"{job.pipeline}/{job.id}: {job.phase}")
        for key, value in job.parameters.items():
            print(f"  {key} = {value}")
        for key, value in job.results.items():
            print(f"  result {key}: {value}")
        if job.error:
            print(f"  error: {job.error}")
        return 0
    if args.action == "abort":
        print(job.abort().phase)
        return 0
    if args.action == "delete":
        job.delete()
        return 0
    try:  # submit (waiting), wait, results
        phase = job.wait(progress=lambda m: print(f"  {m}", file=sys.stderr, flush=True))
    except JobError as exc:
        print(f"vanotebook job: {exc}", file=sys.stderr)
        return 1
    print(phase)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        for name in job.results:
            print(job.download(name, args.out))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``vanotebook`` command."""
    parser = argparse.ArgumentParser(
        prog="vanotebook",
        description="vanotebook: mosaics, source detection, SOMs and cross-match on Dask.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo-data", help="write the synthetic demo sky (images, truth, "
                       "catalogues, spectra) to a folder and summarise it",
                       description="Write the seeded synthetic multi-survey sky with its truth.")
    p.add_argument("directory", help="folder to create")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--size", type=float, default=1.0, help="field side in degrees (default 1)")
    p.add_argument("--catalogue-rows", type=int, default=200_000,
                   help="rows per cross-match catalogue (default 200000)")
    p.add_argument("--spectra", type=int, default=None,
                   help="number of spectra (default 163919, the Gaia XP validation set)")
    p.add_argument("--small", action="store_true", help="a small set for quick tests")
    p.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    p.set_defaults(func=_demo_data)

    p = sub.add_parser("worker", help="start a Dask worker that advertises its GPUs",
                       description="Start a Dask worker; it advertises the resource GPU=n "
                       "when it sees n NVIDIA GPUs.")
    p.add_argument("scheduler", help="scheduler address, e.g. tcp://127.0.0.1:8786")
    p.add_argument("--nthreads", type=int, default=None, help="threads (default: all cores)")
    p.add_argument("--memory-limit", default=None, help="e.g. 4GiB (default: Dask's)")
    p.add_argument("--name", default=None, help="worker name")
    p.add_argument("--gpus", type=int, default=None, help="override the detected GPU count")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface the worker, its nanny and its dashboard listen on "
                        "(default 127.0.0.1)")
    p.add_argument("--local-directory", default=None, help="folder for spilled data")
    p.set_defaults(func=_worker)

    p = sub.add_parser("rerun", help="remake a product from its provenance record",
                       description="Remake a product from its provenance (a .json record or a "
                       "FITS file with a PROVENANCE HDU) and check the outputs' sha256.")
    p.add_argument("record", help="provenance.json, <product>.prov.json, a FITS product, "
                   "or an archive folder (with --catalogue or --ingest)")
    p.add_argument("output", help="where to write the new product")
    p.add_argument("--catalogue", default=None,
                   help="with an archive: remake the ingestion of this catalogue")
    p.add_argument("--ingest", default=None,
                   help="with an archive: remake this ingestion (an id from Archive.ingests())")
    p.set_defaults(func=_rerun)

    p = sub.add_parser("gateway", help="start the hub, the shared Dask cluster and the "
                       "dashboards on this machine",
                       description="Start JupyterHub with per-user servers, the shared Dask "
                       "scheduler and workers, and the dashboards app, on embedded defaults. "
                       "Production choices come from VANOTEBOOK_* environment variables.")
    p.add_argument("--port", type=int, default=None, help="hub port (default 8000)")
    p.add_argument("--workers", type=int, default=None, help="shared Dask workers (default 2)")
    p.add_argument("--state-dir", default=None,
                   help="database, secrets and homes (default ~/.vanotebook/hub)")
    p.add_argument("--admin-password", default=None,
                   help="first password of the admins (default: generated and printed once)")
    p.set_defaults(func=_gateway)

    p = sub.add_parser("job", help="run pipelines as UWS jobs on the gateway's job service",
                       description="Submit, follow and collect UWS jobs (the service is "
                       "$VANOTEBOOK_UWS_URL, logged in with $JUPYTERHUB_API_TOKEN). File "
                       "parameters take paths (uploaded), URLs or archive references; repeat "
                       "images=... for several.")
    p.add_argument("action", choices=["pipelines", "submit", "list", "show", "wait",
                                      "results", "abort", "delete"])
    p.add_argument("ref", nargs="?", default=None,
                   help="submit/list: a pipeline; otherwise a job URL or pipeline/id")
    p.add_argument("params", nargs="*", help="submit: name=value parameters")
    p.add_argument("--no-wait", action="store_true", help="submit: do not wait for the end")
    p.add_argument("--out", default=None, help="download every result into this folder")
    p.add_argument("--phase", action="append", default=None, help="list: only this phase")
    p.add_argument("--last", type=int, default=None, help="list: the newest N")
    p.add_argument("--url", default=None, help="the job service (default $VANOTEBOOK_UWS_URL)")
    p.add_argument("--token", default=None, help="a hub token (default $JUPYTERHUB_API_TOKEN)")
    p.set_defaults(func=_job)

    p = sub.add_parser("info", help="versions, GPUs and the cluster this session would use",
                       description="Print software versions, GPUs and the configured cluster.")
    p.set_defaults(func=_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``vanotebook`` command."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
