"""`run --launcher slurm|local --workers N`: the same sweep run by N workers, submitted with submitit.

Each worker is a task that runs the `run` command as given, minus the launcher's flags, on the shared
results folder: every worker goes through the whole cell list and takes the next cell that nobody holds
(the per-cell claims, store.claim; pull.py). Slurm gets one job array of N tasks (`map_array`); the local
executor starts N processes on this machine, one GPU each. Logs (and submitit's pickles) are in
RESULTS_DIR/launcher/. On pre-emption or time-out, submitit calls the task's `checkpoint` and requeues it;
the requeued task runs the same command, which skips finished cells and resumes the unfinished one from
its end-of-epoch checkpoint (RESULTS_DIR/checkpoints).

submitit is imported only where jobs are made: this module's flags are part of every `--help`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from benchmark.errors import UsageError
from benchmark.parsing import key_values
from benchmark.paths import PROJECT

LAUNCHERS = ("slurm", "local")
WORKER_ENV = "BENCHMARK_LAUNCHER_WORKER"  # "I/N" inside a launcher's task: run the sweep, do not launch
SLURM_FLAGS = ("--slurm-partition", "--slurm-gpus", "--slurm-cpus", "--slurm-time", "--slurm-extra")
FLAGS = ("--launcher", "--workers", *SLURM_FLAGS)  # each takes one value; a task's command drops them
DESCRIBE_ONLY = ("--dry-run", "--json")  # the launcher's own: a task runs the sweep
DEFAULT_TIME_MIN = 24 * 60  # Slurm time limit per task when --slurm-time is not given; requeued after it
# The local executor's own time limit (its default is 2 minutes): a year, i.e. none in effect.
LOCAL_TIMEOUT_MIN = 365 * 24 * 60
MAX_REQUEUES = 20  # time-outs a task may be requeued after (pre-emptions do not count): workers resume
JOB_NAME = "vitbench"
ROOT = PROJECT  # holds benchmark/ and strategies/: the tasks import these


class Settings(Protocol):
    """What the launcher reads of a run's settings (the command line's `cli.experiment.Experiment`, which
    this layer does not import)."""

    launcher: str | None
    workers: int | None
    slurm_partition: str | None
    slurm_gpus: int | None
    slurm_cpus: int | None
    slurm_time: str | None
    slurm_extra: list[str]
    shard: str
    force: bool
    dry_run: bool
    json: bool
    device: str
    results_dir: Path


def inside_task() -> bool:
    """True in a launcher's task: the command runs its sweep there instead of launching again."""
    return bool(os.environ.get(WORKER_ENV))


def check(args: Settings) -> None:
    """Launcher flags that contradict each other or the rest of `run`: one UsageError, before anything."""
    given = [flag for flag in SLURM_FLAGS if getattr(args, _dest(flag)) not in (None, [])]
    if args.launcher is None:
        if given:
            raise UsageError(f"{given[0]} goes with --launcher slurm")
        if args.workers is not None:
            raise UsageError(f"--workers goes with --launcher ({' or '.join(LAUNCHERS)})")
        return
    if args.launcher != "slurm" and given:
        raise UsageError(f"{given[0]} goes with --launcher slurm")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be at least 1; got {args.workers}")
    if args.shard != "0/1":
        raise UsageError(
            "--shard and --launcher split a sweep two ways; give one (launcher workers take the next "
            "unclaimed cell, --shard a fixed share)"
        )
    if args.force and _workers(args) > 1:
        raise UsageError(
            "--force with several workers would rerun each cell once per worker; use --workers 1"
        )
    if args.json and not args.dry_run:
        raise UsageError("--json goes with --dry-run")
    for flag, value, low in (("--slurm-gpus", args.slurm_gpus, 0), ("--slurm-cpus", args.slurm_cpus, 1)):
        if value is not None and value < low:
            raise UsageError(f"{flag} must be at least {low}; got {value}")
    if args.slurm_time is not None:
        minutes(args.slurm_time)
    key_values(args.slurm_extra, "--slurm-extra")


def _dest(flag: str) -> str:
    return flag[2:].replace("-", "_")


def _workers(args: Settings) -> int:
    return 1 if args.workers is None else args.workers


def minutes(text: str) -> int:
    """A Slurm time limit (minutes; MM:SS; HH:MM:SS; D-HH; D-HH:MM; D-HH:MM:SS) in whole minutes."""
    days, dash, clock = text.strip().rpartition("-")
    try:
        parts = [int(part) for part in clock.split(":")]
        day_count = int(days) if dash else 0
    except ValueError:
        parts, day_count = [], 0
    if not parts or len(parts) > 3 or min(parts + [day_count]) < 0:
        raise UsageError(
            f"--slurm-time takes minutes, HH:MM:SS or D-HH:MM, e.g. 1440 or 1-00:00; got '{text}'"
        )
    if dash:  # D-HH, D-HH:MM, D-HH:MM:SS
        hours, mins, secs = (parts + [0, 0])[:3]
    elif len(parts) == 3:  # HH:MM:SS
        hours, mins, secs = parts
    else:  # MM, MM:SS
        hours, mins, secs = 0, parts[0], (parts + [0])[1]
    total = day_count * 1440 + hours * 60 + mins + (1 if secs else 0)  # a started minute counts
    if total < 1:
        raise UsageError(f"--slurm-time must be at least one minute; got '{text}'")
    return total


def task_tokens(tokens: list[str]) -> list[str]:
    """The `run` command line without the launcher's flags (and their values): what each task runs."""
    out, skip = [], False
    for token in tokens:
        if skip:
            skip = False
        elif token in FLAGS:
            skip = True  # the flag's value is the next token
        elif token in DESCRIBE_ONLY:
            continue
        elif token.split("=", 1)[0] not in FLAGS:
            out.append(token)
    return out


class Task:
    """One worker: the `run` command in the submitting folder. submitit requeues a callable that has a
    `checkpoint` method (what submitit.helpers.Checkpointable provides) on pre-emption or time-out; this
    one's state is all on disk (rows and checkpoints), so the requeued task is the same call again."""

    def __init__(self, tokens: list[str], cwd: str, workers: int, main: Callable[[list[str]], int]) -> None:
        # `main` is the command line's entry point, handed down by it (this layer never imports the cli);
        # submitit pickles it by reference
        self.tokens, self.cwd, self.workers, self.main = tokens, cwd, workers, main

    def __call__(self, worker: int) -> int:
        os.chdir(self.cwd)
        os.environ[WORKER_ENV] = f"{worker}/{self.workers}"
        if int(os.environ.get("SLURM_NTASKS", "1")) > 1:  # --slurm-gpus N: one process per GPU, as torchrun
            import submitit

            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        return self.main(["run", *self.tokens])

    def checkpoint(self, worker: int) -> Any:
        import submitit

        print(
            f"worker {worker}: pre-empted or out of time; requeued, it resumes from its checkpoint",
            flush=True,
        )
        return submitit.helpers.DelayedSubmission(self, worker)


@dataclasses.dataclass
class Job:
    """What a launcher submits: N tasks, each the same command, with these executor parameters."""

    executor: str  # slurm or local
    tasks: int
    parameters: dict[str, Any]  # submitit's (for Slurm: sbatch's names)
    folder: Path  # submitit's logs and pickles
    cwd: str
    tokens: list[str]
    gpus: list[str] = dataclasses.field(default_factory=list)  # local: the GPU of each task, in turn

    @property
    def command(self) -> str:
        return shlex.join(["python", "-m", "benchmark", "run", *self.tokens])

    def setup(self, worker: int | None = None) -> list[str]:
        """Shell lines before each task: the benchmark's code on the path; locally, the task's GPU."""
        lines = [f"export PYTHONPATH={shlex.quote(str(ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}"]
        if worker is not None and self.gpus:
            lines.append(f"export CUDA_VISIBLE_DEVICES={self.gpus[worker % len(self.gpus)]}")
        if worker is not None and not self.gpus:  # CPU workers split this process's threads (or cores):
            cores = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)  # more threads than
            lines.append(f"export OMP_NUM_THREADS={max(1, cores // self.tasks)}")  # cores is far slower
        return lines


def plan(args: Settings, tokens: list[str]) -> Job:
    """The job for these arguments; nothing is submitted or written."""
    from benchmark.results import store  # pandas: not on the path of `--help` and usage errors

    folder = store.launcher_path(args.results_dir)
    job = Job(args.launcher, _workers(args), {}, folder, str(Path.cwd()), task_tokens(tokens))
    if args.launcher == "local":
        job.gpus = _local_gpus(args.device)
        job.parameters = {"timeout_min": LOCAL_TIMEOUT_MIN}
        return job
    gpus = args.slurm_gpus if args.slurm_gpus is not None else (0 if args.device == "cpu" else 1)
    parameters: dict[str, Any] = {
        "job_name": JOB_NAME,
        "partition": args.slurm_partition,
        "time": minutes(args.slurm_time) if args.slurm_time else DEFAULT_TIME_MIN,
        "nodes": 1,
        "ntasks_per_node": max(gpus, 1),  # one process per GPU (data-parallel within each cell)
        "gpus_per_node": gpus or None,
        "cpus_per_task": args.slurm_cpus,
        "array_parallelism": job.tasks,
        "setup": job.setup(),
        "additional_parameters": {
            key: value if value is True else str(value)
            for key, value in key_values(args.slurm_extra, "--slurm-extra").items()
        },
    }
    job.parameters = {key: value for key, value in parameters.items() if value not in (None, {})}
    return job


def _local_gpus(device: str) -> list[str]:
    """The GPUs the local workers take in turn: CUDA_VISIBLE_DEVICES's, else every GPU; none on the CPU."""
    if device == "cpu":
        return []
    if device not in ("auto", "cuda"):
        raise UsageError(
            f"--launcher local gives each worker one GPU of its own (as cuda); use --device auto or cuda, not {device}"
        )
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        gpus = [gpu.strip() for gpu in visible.split(",") if gpu.strip()]
    else:
        import torch

        gpus = [str(index) for index in range(torch.cuda.device_count())]
    if device == "cuda" and not gpus:
        raise UsageError("--device cuda: no GPU is visible here; use --device auto or cpu")
    return gpus


def sbatch_script(job: Job) -> str:
    """The sbatch file submitit writes for this job array (its own function, so no Slurm is needed)."""
    from submitit.slurm.slurm import _make_sbatch_string

    command = f"{shlex.quote(sys.executable)} -u -m submitit.core._submit {shlex.quote(str(job.folder))}"
    return _make_sbatch_string(command=command, folder=job.folder, map_count=job.tasks, **job.parameters)


def describe(job: Job, as_json: bool) -> str:
    """The dry run's account of the job: executor, parameters, tasks, each task's command, logs."""
    facts = {
        "executor": job.executor,
        "tasks": job.tasks,
        "parameters": job.parameters,
        "command": job.command,
        "cwd": job.cwd,
        "logs": str(job.folder),
    }
    if job.executor == "slurm":
        facts["sbatch"] = sbatch_script(job)
    else:
        facts["gpus"] = [job.gpus[worker % len(job.gpus)] for worker in range(job.tasks)] if job.gpus else []
    if as_json:
        return json.dumps(facts, indent=2, default=str)
    where = "a Slurm job array" if job.executor == "slurm" else "local processes"
    lines = [
        f"Would submit {job.tasks} task(s) as {where} (nothing is submitted or written):",
        f"  each task runs, in {job.cwd}: {job.command}",
        f"  executor parameters: {json.dumps(job.parameters, default=str)}",
        f"  logs: {job.folder}",
    ]
    if job.executor == "slurm":
        lines += ["  sbatch file:", *("    " + line for line in facts["sbatch"].splitlines())]
    else:
        lines.append(f"  GPUs (CUDA_VISIBLE_DEVICES per task): {facts['gpus'] or 'none (CPU)'}")
    return "\n".join(lines)


def launch(
    args: Settings, tokens: list[str], say: Callable[[str], None], main: Callable[[list[str]], int]
) -> int:
    """Submit (or with --dry-run, describe) the job, whose tasks each call `main(["run", ...])`; a local one
    is waited for. Returns an exit status."""
    job = plan(args, tokens)
    if args.dry_run:
        print(describe(job, args.json))
        return 0
    from benchmark.results import store  # pandas: not on the path of `--help` and usage errors

    store.check_writable(args.results_dir)
    if job.executor == "slurm" and not (shutil.which("sbatch") and shutil.which("srun")):
        raise UsageError(
            "--launcher slurm needs Slurm here (sbatch and srun); --dry-run shows the job without it"
        )
    submit = _submit_slurm if job.executor == "slurm" else _submit_local
    return submit(job, say, main)


def _submit_slurm(job: Job, say: Callable[[str], None], main: Callable[[list[str]], int]) -> int:
    import submitit

    executor = submitit.SlurmExecutor(folder=job.folder, max_num_timeout=MAX_REQUEUES)
    executor.update_parameters(**job.parameters)
    jobs = executor.map_array(Task(job.tokens, job.cwd, job.tasks, main), range(job.tasks))
    array = jobs[0].job_id.split("_")[0]
    say(f"submitted Slurm job array {array}: {job.tasks} task(s) ({', '.join(j.job_id for j in jobs)})")
    say(f"each runs: {job.command}")
    say(f"logs: {job.folder}; watch: squeue -j {array}; cancel: scancel {array}")
    return 0


def _submit_local(job: Job, say: Callable[[str], None], main: Callable[[list[str]], int]) -> int:
    """N local processes (submitit's LocalExecutor), waited for; Ctrl-C cancels them."""
    import submitit

    executor = submitit.LocalExecutor(folder=job.folder, max_num_timeout=MAX_REQUEUES)
    task, jobs = Task(job.tokens, job.cwd, job.tasks, main), []
    for worker in range(job.tasks):
        executor.update_parameters(**job.parameters, setup=job.setup(worker))
        jobs.append(executor.submit(task, worker))
    gpus = f" on GPUs {','.join(job.gpus)}" if job.gpus else " on the CPU"
    say(
        f"started {job.tasks} local worker(s){gpus}: jobs {', '.join(j.job_id for j in jobs)}; logs: {job.folder}"
    )
    try:
        statuses = [_outcome(each, worker, say) for worker, each in enumerate(jobs)]
    except KeyboardInterrupt:
        for each in jobs:
            each.cancel(check=False)  # SIGINT: each worker records its current cell as cancelled
        raise
    return max(statuses)


def _outcome(job: Any, worker: int, say: Callable[[str], None]) -> int:
    """Wait for one local job; its run's exit status, or 1 if it ended without one (killed)."""
    job.wait()
    if not job.paths.result_pickle.exists():
        say(
            f"worker {worker} (job {job.job_id}) ended without finishing (killed?); log: {job.paths.stderr}. "
            "Rerun the same command to finish what it left: its cell resumes from its checkpoint"
        )
        return 1
    try:
        status = int(job.result())
    except Exception as error:  # the task raised: submitit carries its traceback
        say(
            f"worker {worker} (job {job.job_id}) failed: {str(error).splitlines()[0]}; log: {job.paths.stderr}"
        )
        return 1
    say(f"worker {worker} (job {job.job_id}) finished with exit status {status}")
    return status
