"""``memviz worker``: connect (or listen), handshake, take a spec, run, report.

Exit codes: 0 finished or stopped, 2 the user's input was wrong (model,
option), 3 out of memory, 1 anything else. Every failure is also sent as an
``error`` message with a one-line message and the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import traceback

from ..core.rank_summary import with_sum
from ..core.spec import ModelError, RunSpec, SpecError
from ..protocol import address, handshake
from ..protocol.accept import accept_authenticated, describe_peer
from ..protocol.framing import FrameError
from ..protocol.messages import ProtocolError
from ..protocol.transport import Connection, ConnectionClosed
from ..techniques import preflight
from ..techniques.plan import Plan
from ..techniques.registry import libraries_for
from . import lean_imports
from .emitter import Emitter, now
from .failures import EXIT_USER_ERROR, classify, one_line, request_bytes

START_TIMEOUT_S = 60.0


def _open_connection(args: argparse.Namespace, token: str) -> tuple[Connection, list[dict]]:
    """Connect to the controller, or wait for the first one that proves the token and
    sends its spec in a frame of its own: a peer whose first frame fails its check (a
    relay that passed a real controller's proof on) is refused, and the waiting goes on."""
    if args.connect:
        conn = Connection(address.connect(address.parse(args.connect)))
        handshake.perform(conn, token, "worker")
        return conn, _first_frame(conn)
    private = args.listen == address.PRIVATE
    where = address.private_unix_address() if private else address.parse(args.listen)
    server, real = address.listen(where, allow_remote=args.allow_remote)
    print(f"memviz worker listening on {real}", flush=True)
    if not real.is_loopback:
        print(f"memviz worker: warning: {real} is reachable from other machines: anyone who "
              "can reach it may try the token, and what the run streams (its samples, "
              "tensor names, shapes and your model's module names) travels unencrypted, "
              "only authenticated; an SSH tunnel to a loopback address keeps both private",
              file=sys.stderr, flush=True)

    def refused(text: str) -> None:
        print(f"memviz worker: {text}", file=sys.stderr, flush=True)

    try:
        while True:
            accepted = accept_authenticated(server, token, "worker", refused=refused)
            assert accepted is not None  # no timeout, no giving up
            conn = accepted[0]
            try:
                return conn, _first_frame(conn)
            except (ProtocolError, FrameError, ConnectionClosed, OSError) as exc:
                refused(f"refused {describe_peer(conn.sock)} after its handshake: {exc}")
                conn.close()
    finally:
        server.close()
        if real.family == "unix":  # nothing is left to connect to by mistake
            with contextlib.suppress(OSError):
                os.unlink(real.path)
            if private:
                with contextlib.suppress(OSError):
                    os.rmdir(os.path.dirname(real.path))


def _first_frame(conn: Connection) -> list[dict]:
    conn.sock.settimeout(START_TIMEOUT_S)
    messages = conn.receive()
    conn.sock.settimeout(None)
    return messages


def _spec_in(messages: list[dict]) -> RunSpec:
    start = next((m for m in messages if m["type"] == "start"), None)
    if start is None:
        raise SpecError("the controller sent no start message")
    spec = RunSpec.from_dict(start["spec"])
    preflight(spec, check_device=False)  # the worker's torch says that itself
    lean_imports.allow(libraries_for(spec))
    return spec


STOP_ASKED = "stop asked"


def _listen_for_stop(conn: Connection, stop: threading.Event, emitter, t0: float,
                     detail_next: threading.Event) -> None:
    """Any stop message, or the controller going away, stops the run (and the log says
    when, so how promptly it stopped can be read off the stream); ``detail`` asks for
    the next step with the per-op tracker."""
    try:
        while not stop.is_set():
            kinds = {m["type"] for m in conn.receive()}
            if "detail" in kinds:
                detail_next.set()
            if "stop" in kinds:
                emitter.send({"type": "log", "t": now() - t0, "level": "info",
                              "text": STOP_ASKED})
                break
    except (ConnectionClosed, OSError, ValueError):
        pass
    stop.set()


def run_spec(conn: Connection, spec: RunSpec, controller: str | None = None,
             token: str = "") -> int:
    """Run ``spec``, streaming to ``conn``; ranks 1..N-1 of a sharded run stream to
    ``controller`` (the address rank 0 connected to) with ``token``."""
    t0 = now()
    emitter = Emitter(conn)
    stop = threading.Event()
    detail_next = threading.Event()
    threading.Thread(target=_listen_for_stop, args=(conn, stop, emitter, t0, detail_next),
                     daemon=True, name="memviz-control").start()
    from .import_gc import import_transformers_modeling, imports_without_collection

    with imports_without_collection():
        import torch
        import transformers  # noqa: F401  (before the technique libraries, which import it)

        from ..models import load_task
        from ..models.loading import builds_transformers_model

        if builds_transformers_model(spec.model):
            import_transformers_modeling()
        from . import drift, environment, model_summary, moe_routing, ranks
        from .gpu import open_nvml
        from .runner import Runner
        from .samplers import MemorySampler

        import_rss = lean_imports.import_measured(libraries_for(spec))
    cuda_index = None
    fake = None
    reported = spec  # what the run says it is; ``spec`` below is what executes
    if spec.simulate:  # the real step on fake tensors: everything but data and arithmetic
        from .simulation import enter_fake_mode, run_spec_for

        fake = enter_fake_mode(spec)
        spec = run_spec_for(spec)
    elif spec.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SpecError(f"device {spec.device} asked for, but this torch "
                            f"({torch.__version__}) has no usable CUDA device")
        cuda_index = torch.device(spec.device).index or 0
    plan = Plan(spec, reported)
    plan.prepare_process()  # allocator settings: before torch allocates anything
    nvml = open_nvml(cuda_index or 0)
    sampler = MemorySampler(spec.sample_hz, emitter.sample, now, t0, nvml, cuda_index)
    sampler.start()
    exit_code, reason = 0, "finished"
    tracker = reference = task = runner = routing = None
    peers: list = []
    try:
        torch.manual_seed(spec.seed)
        emitter.send({"type": "phase", "t": now() - t0, "step": -1, "name": "load",
                      "edge": "begin"})
        if plan.world_size > 1 and fake is not None:  # every rank here, one by one
            from .simulated_ranks import join_fake_group

            join_fake_group(0, plan.world_size)
        elif plan.world_size > 1:
            port = ranks.free_port()
            peers = ranks.launch_peers(spec, plan.world_size, port, controller, token)
            emitter.send({"type": "log", "t": now() - t0, "level": "info",
                          "text": f"started ranks 1..{plan.world_size - 1} "
                                  f"(pids {', '.join(str(p.pid) for p in peers)})"})
        measure_drift = spec.mode != "train" and bool(plan.entries) and not spec.simulate
        if measure_drift and plan.model_dtype() != "fp32":
            reference = drift.reference_for(spec, plan.model_dtype())
        task = load_task(spec, plan.model_dtype())
        if peers:
            ranks.join(0, plan.world_size, port, spec.device)
            ranks.reseed_data(task, spec, 0)
        if measure_drift and reference is None:
            reference = drift.reference(task, spec)
        plan.apply_model(task)
        routing = moe_routing.apply(task.model, spec, simulated=fake is not None)
        emitter.send({"type": "phase", "t": now() - t0, "step": -1, "name": "load",
                      "edge": "end"})
        if task.convention is not None:
            emitter.send({"type": "log", "t": now() - t0, "level": "info",
                          "text": f"{spec.model} is a plain module, run as "
                                  f"{task.convention.description}"})
        summary = model_summary.summarize(spec.model, task.kind, task.model)
        tracker = _start_tracking(spec, task, plan, sampler, emitter, t0, cuda_index,
                                  simulated_cuda=fake is not None and
                                  reported.device.startswith("cuda"))
        emitter.send({"type": "run_started", "spec": reported.to_dict(),
                      "environment": {**environment.describe(nvml, spec.device),
                                      "technique_libraries":
                                      lean_imports.loaded_technique_libraries(import_rss)},
                      "model": summary, "techniques": plan.record(),
                      "t0_wall": _wall_at(t0)})
        if spec.mode == "generate" and not task.can_generate:
            raise SpecError(f"{spec.model} cannot generate: generation needs a Hugging Face "
                            "causal or encoder-decoder LM (gpt2-tiny, llama-tiny, a T5, "
                            "or your own)")
        runner = Runner(ranks.local_spec(spec, plan.world_size), task, emitter, sampler, stop,
                        t0, tracker, plan, detail_next)
        reason = runner.run()
    except BaseException as exc:
        failed_at = now() - t0  # the frames of the failure still hold their tensors
        if fake is not None:
            from .simulation import explain

            exc = explain(exc)
        kind, exit_code = classify(exc)
        reason = "error"
        error = {"type": "error", "kind": kind, "message": one_line(exc),
                 "traceback": traceback.format_exc(), "t": failed_at}
        wanted = request_bytes(exc) if kind == "oom" else None
        if wanted is not None:
            error["request_bytes"] = wanted
        emitter.send(error)
    finally:
        if tracker is not None:
            tracker.stop()
        sampler.stop()
        output_drift = distributed = flops = on_disk = None
        if reason == "finished" and plan.world_size == 1:  # (ranks would wait in collectives)
            flops = runner.meter.flops  # counted from a detailed step's own ops
            if flops is None and not spec.simulate:  # no step was: one counted after them
                from .flops import flops_per_step

                flops = _after_run(emitter, t0, "counting FLOPs", lambda: flops_per_step(
                    task, ranks.local_spec(spec, plan.world_size), plan))
        if reference is not None and reason == "finished":
            output_drift = _after_run(emitter, t0, "measuring the output drift",
                                      lambda: drift.measure(task, reference))
        if reason == "finished" and spec.disk_size and plan.world_size == 1 and \
                not spec.simulate:
            from .disk_size import model_on_disk

            on_disk = _after_run(emitter, t0, "measuring the model on disk",
                                 lambda: model_on_disk(task.model))
        if peers:
            distributed = _finish_ranks(peers, reason, tracker, runner)
        elif fake is not None and plan.world_size > 1:
            distributed = _simulate_other_ranks(spec, reported, plan.world_size, t0, stop,
                                                reason, tracker, runner, emitter)
        emitter.send({"type": "run_done", "t": now() - t0, "reason": reason,
                      "summary": {"tracking": tracker.summary() if tracker else None,
                                  "techniques": plan.record(), "output_drift": output_drift,
                                  "distributed": distributed, "flops_per_step": flops,
                                  "model_on_disk": on_disk, "simulated": spec.simulate,
                                  "routing": routing}})
        emitter.close()
        if fake is not None:
            fake.__exit__(None, None, None)
    return exit_code


def _after_run(emitter, t0: float, what: str, extra):
    """An extra figure after the run: a failure says so in the log and loses nothing
    that was measured."""
    try:
        return extra()
    except Exception as exc:
        emitter.send({"type": "log", "t": now() - t0, "level": "warning",
                      "text": f"skipped {what}: {type(exc).__name__}: {one_line(exc)}"})
        return None


def _start_tracking(spec: RunSpec, task, plan: Plan, sampler, emitter, t0: float,
                    cuda_index: int | None, simulated_cuda: bool = False):
    """The tensor tracker over the loaded model (None with ``--track samples``): the
    weights reported at start, packed bytes the techniques hold, its events streamed.
    ``simulated_cuda``: every allocation also goes through the caching allocator's
    model, whose figures stand where a real GPU's would."""
    if spec.track == "samples":
        return None
    from ..tracking import TensorTracker

    stacks = spec.track == "tensors+stacks"
    if cuda_index is not None:  # the allocator's own trace: no per-op Python on CUDA
        from ..tracking.allocator_trace import AllocatorTracker, CudaHistory

        history = CudaHistory(cuda_index, stacks)
        history.start()
        tracker = AllocatorTracker(now, t0, history.take, device=f"cuda:{cuda_index}",
                                   stacks=stacks)
    else:
        tracker = TensorTracker(now, t0, stacks=stacks)
        if simulated_cuda:
            from ..core.cuda_model import SimulatedDevice

            tracker.simulated_device = SimulatedDevice()
    tracker.start(task.model)
    for nbytes, category, module, label in plan.opaque_bytes(task):
        tracker.add_opaque(nbytes, category, module, label)
    sampler.tracker = tracker
    emitter.sources.append(tracker.take_messages)
    return tracker


def _simulate_other_ranks(spec: RunSpec, reported: RunSpec, world_size: int, t0: float,
                          stop: threading.Event, reason: str, tracker, runner,
                          emitter) -> dict | None:
    """After a simulated rank 0, the other ranks (when rank 0 finished)."""
    import torch.distributed as dist

    from . import ranks
    from .simulated_ranks import simulate_other_ranks

    try:
        if reason != "finished":
            return None

        def say(text: str) -> None:
            emitter.send({"type": "log", "t": now() - t0, "level": "info", "text": text})

        first = ranks.rank_figures(0, tracker, runner.done)
        return _after_run(emitter, t0, "simulating the other ranks", lambda: (
            simulate_other_ranks(spec, reported, world_size, t0, stop, first, say)))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _finish_ranks(peers, reason: str, tracker, runner) -> dict | None:
    """Gather every rank's figures (when all finished), then end the peers."""
    import torch.distributed as dist

    from . import ranks

    figures = None
    try:
        if reason == "finished" and dist.is_initialized():
            steps = runner.done if runner is not None else []
            gathered = ranks.gather(ranks.rank_figures(0, tracker, steps))
            figures = with_sum(gathered) if gathered else None
    finally:
        for peer in peers:
            try:
                peer.wait(timeout=30 if figures is not None else 0.1)
            except Exception:
                peer.kill()
                peer.wait()
        if dist.is_initialized():
            dist.destroy_process_group()
    return figures


def run_peer(rank: int, world_size: int, port: int) -> int:
    """Rank 1..N-1 of a distributed run: the same run, streamed to the controller when
    rank 0 told it where, figures to rank 0 at the end."""
    import json

    import torch

    from ..models import load_task
    from . import environment, model_summary, moe_routing, ranks
    from .gpu import open_nvml
    from .runner import Runner
    from .samplers import MemorySampler

    ranks.exit_with_parent()
    spec = RunSpec.from_dict(json.loads(os.environ[ranks.SPEC_ENV]))
    lean_imports.allow(libraries_for(spec))
    plan = Plan(spec)
    plan.prepare_process()
    t0 = now()
    emitter = ranks.connect_to_controller(rank)
    cuda_index = (torch.device(spec.device).index or 0) if spec.device != "cpu" else None
    nvml = open_nvml(cuda_index or 0)
    sampler = MemorySampler(spec.sample_hz, emitter.sample, now, t0, nvml, cuda_index)
    sampler.start()
    torch.manual_seed(spec.seed)
    task = load_task(spec, plan.model_dtype())
    ranks.join(rank, world_size, port, spec.device)
    ranks.reseed_data(task, spec, rank)
    plan.apply_model(task)
    moe_routing.apply(task.model, spec, simulated=False)
    tracker = _start_tracking(spec, task, plan, sampler, emitter, t0, cuda_index)
    emitter.send({"type": "run_started", "spec": spec.to_dict(), "rank": rank,
                  "world_size": world_size,
                  "environment": environment.describe(nvml, spec.device),
                  "model": model_summary.summarize(spec.model, task.kind, task.model),
                  "techniques": plan.record(), "t0_wall": _wall_at(t0)})
    runner = Runner(ranks.local_spec(spec, world_size), task, emitter, sampler,
                    threading.Event(), t0, tracker, plan)
    reason = "error"
    try:
        reason = runner.run()
    finally:
        if tracker is not None:
            tracker.stop()
        sampler.stop()
        emitter.send({"type": "run_done", "t": now() - t0, "reason": reason,
                      "summary": {"tracking": tracker.summary() if tracker else None,
                                  "techniques": plan.record(), "rank": rank}})
        emitter.close()
        if getattr(emitter, "conn", None) is not None:
            emitter.conn.close()
    ranks.gather(ranks.rank_figures(rank, tracker, runner.done))
    import torch.distributed as dist

    dist.destroy_process_group()
    return 0


def _wall_at(t0: float) -> float:
    import time

    return time.time() - (now() - t0)


def serve_controller(args: argparse.Namespace, token: str) -> int:
    """Connect to the controller (or wait for it), take its spec, run it."""
    conn = None
    try:
        conn, first = _open_connection(args, token)
        spec = _spec_in(first)
    except SpecError as exc:
        print(f"memviz worker: {exc}", file=sys.stderr)
        if conn is not None:
            kind = "model" if isinstance(exc, ModelError) else "option"
            with contextlib.suppress(Exception):
                conn.send([{"type": "error", "kind": kind, "message": str(exc),
                            "traceback": ""}])
        return EXIT_USER_ERROR
    except Exception as exc:
        print(f"memviz worker: {exc}", file=sys.stderr)
        return 1
    try:
        return run_spec(conn, spec, args.connect, token)
    finally:
        conn.close()


def connect_and_serve(where: str, token: str) -> int:
    """A worker for the controller at ``where`` (a warm parent's forked child)."""
    return serve_controller(argparse.Namespace(connect=where, listen=None,
                                               allow_remote=False), token)
