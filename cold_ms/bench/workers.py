"""Benchmark worker processes: each measured side in a spawned process of its own (a clean
MindSpore or torch), started here, reporting its own peak memory."""
import multiprocessing as mp


def start(target, args, what):
    """(process, coordinator's end of its pipe, the first message it sent): target(conn, *args)
    in a spawned process; RuntimeError naming `what` if it dies before saying anything."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=target, args=(child,) + tuple(args), daemon=True)
    proc.start()
    for _ in range(900):  # up to 15 minutes, but no longer than the worker lives
        if parent.poll(1):
            return proc, parent, parent.recv()
        if not proc.is_alive():
            break
    raise RuntimeError(f"{what} did not start (see its traceback above)")


def peak_rss_mb():
    """This process's peak resident memory (VmHWM), MB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
