"""``memviz run``: the same worker as the GUI, driven from a terminal."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from typing import TYPE_CHECKING

from ..core.categories import LABELS
from ..core.spec import OPTIMIZERS, ROUTINGS, RunSpec, SpecError
from .formatting import human_bytes, ranks_lines, table

if TYPE_CHECKING:  # a run's machinery is imported by the commands that run (every
    # command's arguments are built from here, memviz record's among them)
    from ..core.run import Run
    from ..session import WorkerSession


def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    d = RunSpec()
    parser.add_argument("--model", default=d.model,
                        help="preset, Hugging Face directory, module:function or file.py:function")
    parser.add_argument("--mode", default=d.mode, choices=["train", "infer", "generate"],
                        help="training steps, inference forwards or generation")
    parser.add_argument("--batch-size", type=int, default=d.batch_size,
                        help="sequences a step")
    parser.add_argument("--seq-len", type=int, default=d.seq_len, help="tokens a sequence")
    parser.add_argument("--steps", type=int, default=d.steps, help="steps to run")
    parser.add_argument("--optimizer", default=d.optimizer, choices=OPTIMIZERS,
                        help="the training optimizer")
    parser.add_argument("--lr", type=float, default=d.lr, help="learning rate")
    parser.add_argument("--device", default=d.device, help="cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=d.seed,
                        help="seeds the weights and the data")
    parser.add_argument("--data", default=d.data, choices=["corpus", "random"],
                        help="the built-in text corpus, or random tokens")
    parser.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens,
                        help="tokens generated a step (generate)")
    parser.add_argument("--sample-hz", type=float, default=d.sample_hz,
                        help="memory samples a second")
    parser.add_argument("--track", default=d.track,
                        choices=["samples", "tensors", "tensors+stacks"],
                        help="samples only, every tensor, or every tensor with its Python "
                             "stack on the detailed steps (the default)")
    parser.add_argument("--simulate", action="store_true",
                        help="run the step on fake tensors: every tensor and op, no data, no "
                             "arithmetic (a model too large for this machine; --device cuda "
                             "without a GPU)")
    parser.add_argument("--routing", choices=ROUTINGS, default="",
                        help="a mixture of experts' routing, forced on the routers: balanced "
                             "(each expert its share of tokens × top-k) or worst (every "
                             "token to the same experts); a simulation assumes balanced "
                             "unless told")
    parser.add_argument("--detail", default=d.detail, metavar="all|first:K,every:N",
                        help="which steps the per-op tracker sees (every temporary, every "
                             "op); the others get the cheap signals")
    parser.add_argument("--technique", action="append", default=[], metavar="NAME[:k=v,...]",
                        help="apply a memory technique (repeatable; see `memviz techniques`)")


def spec_from_args(args: argparse.Namespace, check_device: bool = True) -> RunSpec:
    """The spec the arguments describe; techniques parsed and the whole set checked."""
    from ..techniques import parse_technique, preflight

    spec = RunSpec(
        model=args.model, mode=args.mode, batch_size=args.batch_size, seq_len=args.seq_len,
        steps=args.steps, optimizer=args.optimizer, lr=args.lr, device=args.device,
        seed=args.seed, data=args.data, max_new_tokens=args.max_new_tokens,
        sample_hz=args.sample_hz, track=args.track, detail=args.detail,
        simulate=args.simulate, routing=getattr(args, "routing", ""),
        techniques=[parse_technique(text) for text in args.technique],
    )
    preflight(spec, check_device=check_device and not spec.simulate)
    return spec


class Progress:
    """A one-line progress bar on stderr, redrawn at most 10 times a second."""

    def __init__(self, total: int, stream=sys.stderr) -> None:
        self.total = total
        self.stream = stream
        self.interactive = stream.isatty()
        self._last = 0.0
        self._shown_steps = 0

    def update(self, run: Run) -> None:
        with run.lock:
            steps = len(run.steps)
            last = run.steps[-1] if run.steps else None
            rss = run.samples.column("rss")[-1] if len(run.samples) else None
        if not self.interactive:
            if last is not None and steps != self._shown_steps:
                self._shown_steps = steps
                loss = "—" if last.loss is None else f"{last.loss:.4f}"
                print(f"step {last.step + 1}/{self.total}  loss {loss}  "
                      f"{last.seconds:.2f} s  peak {human_bytes(last.peak_rss_bytes)}",
                      file=self.stream, flush=True)
            return
        now = time.monotonic()
        if now - self._last < 0.1:
            return
        self._last = now
        width = 30
        filled = int(width * steps / max(self.total, 1))
        loss = "" if last is None or last.loss is None else f" loss {last.loss:.3f}"
        state = run.state if run.state != "running" or steps else "loading"
        self.stream.write(f"\r{state:8} [{'#' * filled}{'.' * (width - filled)}] "
                          f"{steps}/{self.total}{loss}  rss {human_bytes(rss)}   ")
        self.stream.flush()

    def close(self) -> None:
        if self.interactive:
            self.stream.write("\n")


def print_summary(summary: dict) -> None:
    """The step table and the peaks; a run stopped early prints what it reached."""
    if summary["steps"]:
        rows = [[str(s["step"]), "—" if s["loss"] is None else f"{s['loss']:.4f}",
                 f"{s['seconds']:.3f}", human_bytes(s["peak_rss_bytes"])]
                for s in summary["steps"]]
        print(table(["step", "loss", "seconds", "peak RSS"], rows))
        print()
    model = summary["model"]
    if model["parameters"] is None:
        print(f"model      {model['name']} (stopped before it was loaded)")
    else:
        print(f"model      {model['name']} ({model['class']}): {model['parameters']:,} "
              f"parameters, {model['trainable_parameters']:,} trainable")
    print(f"peak RSS   {human_bytes(summary['peak']['rss_bytes'])}")
    if summary["peak"]["tracked_bytes"] is not None:
        by_cat = ", ".join(f"{LABELS[name]} {human_bytes(b)}"
                           for name, b in (summary["peak_by_category"] or {}).items() if b)
        print(f"tracked    {human_bytes(summary['peak']['tracked_bytes'])} at peak: {by_cat}")
    for line in ranks_lines(summary.get("distributed")):
        print(f"ranks      {line}")
    routing = summary.get("routing")
    if routing:
        how = "assumed" if routing["assumed"] else "forced" if routing["forced"] else "measured"
        print(f"routing    {routing['routing']} ({how}), {routing['experts']} experts in "
              f"{routing['layers']} layers, expert path {', '.join(routing['expert_paths'])}")
    gpu = summary["peak"]["gpu_bytes"]
    print(f"peak GPU   {human_bytes(gpu) if gpu is not None else 'no GPU used'}")
    if summary["step_seconds_median"] is not None:
        print(f"step time  {summary['step_seconds_median']:.3f} s median, "
              f"{summary['tokens_per_second']:.0f} tokens/s")


def add_cap_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--memory-cap", default="auto", metavar="SIZE|auto|none",
                        help="stop a run whose memory passes this (RSS on CPU, GPU memory on "
                             "CUDA; auto: 80%% of the memory available at start, within a "
                             "container's limit)")


EXIT_CODES = {"oom": 3, "option": 2, "model": 2}
EXIT_INTERRUPTED = 130


def exit_code(run: Run) -> int:
    if run.state != "failed":
        return 0
    return EXIT_CODES.get((run.error or {}).get("kind", ""), 1)


class CtrlC:
    """Ctrl-C at any moment of a run: the first stops it cleanly at the next phase, the
    second kills the worker. Installed as the SIGINT handler for the run's lifetime, so
    no KeyboardInterrupt can land in the middle of starting or reporting."""

    def __init__(self) -> None:
        self.presses = 0
        self.session: WorkerSession | None = None
        self._previous = None

    def __enter__(self) -> CtrlC:
        self._previous = signal.signal(signal.SIGINT, self._pressed)
        return self

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGINT, self._previous)

    def _pressed(self, _signum, _frame) -> None:
        self.presses += 1
        if self.presses == 1:
            print("\nmemviz: stopping at the next phase (Ctrl-C again to kill the worker)",
                  file=sys.stderr, flush=True)
        self.apply()

    def apply(self) -> None:
        """Pass the presses so far on to the session (once it exists)."""
        if self.session is None or not self.presses:
            return
        if self.presses == 1:
            self.session.request_stop()
        else:
            self.session.kill()

    @property
    def interrupted(self) -> bool:
        return self.presses > 0


def cmd_run(args: argparse.Namespace) -> int:
    with CtrlC() as ctrl_c:
        return _run(args, ctrl_c)


def _run(args: argparse.Namespace, ctrl_c: CtrlC) -> int:
    from ..protocol.token import TokenError, token_from
    from ..session.memory_cap import parse_cap
    from .outputs import STDOUT, StagedOutput, check_output, human_stream, shown, write_json

    try:
        spec = spec_from_args(args, check_device=not args.connect)  # the remote one says
        # "auto" is a share of this machine's memory: no measure of a remote one
        cap = parse_cap("none" if args.connect and args.memory_cap == "auto"
                        else args.memory_cap, spec.device)
        check_output(args.summary)
        check_output(args.output, overwrite=args.force)
        if args.connect:
            from ..protocol.address import parse as parse_address

            parse_address(args.connect)
        token = token_from(args.token_file) if args.connect else ""
        if args.connect and not token:
            raise SpecError("--connect needs the worker's token: MEMVIZ_TOKEN or --token-file")
    except (SpecError, TokenError, ValueError) as exc:
        print(f"memviz: error: {exc}", file=sys.stderr)
        return 2
    from ..core.run import Run
    from ..core.summary import build_summary
    from ..session import WorkerSession

    run = Run(spec)
    recorder = None
    target = StagedOutput(args.output, ".memviz", in_place=True)
    if args.output:
        from ..snapshot import Recorder

        try:
            recorder = Recorder(target.path, spec.to_dict(), overwrite=args.force)
        except OSError as exc:  # exists (2), or cannot be written at all (1)
            print(f"memviz: error: {exc}", file=sys.stderr)
            return 2 if isinstance(exc, FileExistsError) else 1
    if args.connect:
        from ..session.attach import AttachedSession

        session = AttachedSession(run, args.connect, token, recorder=recorder, memory_cap=cap)
    else:
        session = WorkerSession(run, recorder=recorder, memory_cap=cap)
    session.start()
    ctrl_c.session = session
    ctrl_c.apply()  # a Ctrl-C while it started
    progress = Progress(spec.steps)
    while not session.wait(0.1):
        progress.update(run)
    progress.update(run)
    progress.close()
    summary = build_summary(run)
    target.deliver()
    if args.summary:
        write_json(args.summary, summary)
    if args.output and (run.error or {}).get("kind") != "disk":
        print(f"recorded to {'standard output' if args.output == STDOUT else shown(args.output)}",
              file=sys.stderr)
    if run.state == "failed":
        assert run.error is not None
        print(f"memviz: error: {run.error['message']}", file=sys.stderr)
        oom = summary.get("oom")
        if oom:
            print_oom(oom)
        return exit_code(run)
    with contextlib.redirect_stdout(human_stream(args.output, args.summary)):
        print_summary(summary)
    if ctrl_c.interrupted:
        print(f"memviz: stopped after {len(run.steps)} of {spec.steps} steps", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def print_oom(oom: dict) -> None:
    """What was live at the last moment before memory ran out (stderr)."""
    lines = [f"live at the last moment ({oom['t']:.2f} s): "
             f"{human_bytes(oom['tracked_bytes'])} tracked"]
    lines += [f"  {LABELS[name]:<34} {human_bytes(b)}" for name, b in oom["by_category"].items()]
    if oom["by_module"]:
        lines.append("largest modules:")
        lines += [f"  {name[:48]:<48} {human_bytes(b)}" for name, b in oom["by_module"][:5]]
    print("\n".join(lines), file=sys.stderr)
