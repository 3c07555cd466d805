"""A process's peak resident memory, measurable per run: :func:`reset_peak_rss` starts the
count afresh (Linux: writing 5 to ``/proc/self/clear_refs`` resets ``VmHWM``), and
:func:`peak_rss_mb` reads it. Where the peak cannot be reset, it is the process's."""

from __future__ import annotations

__all__ = ["peak_rss_mb", "reset_peak_rss"]


def reset_peak_rss() -> bool:
    """Start measuring this process's peak resident memory afresh; whether it could."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB since the last :func:`reset_peak_rss`
    (``VmHWM``), or since it started where that cannot be reset."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
