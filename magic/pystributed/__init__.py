"""pystributed: run notebook cells as MPI ranks on a remote host with pystrib.

    %load_ext pystributed

    %%remote -n 2 --remote gpu1 --push data --pull model
    ...cell...

or, as the original PyStributed:

    import pystributed.main as runner

    %%save_for_remote
    ...cell...

    runner.main()

All the work is done by the `pystrib` binary, driven through its --json
events (docs/events.md). It is found through pystributed.set_binary(), else
$PYSTRIB_BIN, else `binary` under [notebook] in the pystrib config, else PATH.
"""

from .binary import find_binary, set_binary
from .cluster import Cluster
from .errors import (BinaryNotFound, JobInterrupted, JobTimeout, PullError,
                     PushError, PystribError, RemoteError)
from .events import RankResult, RunResult
from .runner import JobOptions, last_result
from .session import (CellInterrupted, CellTimeout, Session, SessionBroken,
                      SessionError)

__version__ = "0.1.0"

__all__ = ["BinaryNotFound", "CellInterrupted", "CellTimeout", "Cluster", "Session",
           "SessionBroken", "SessionError", "JobInterrupted", "JobOptions", "JobTimeout",
           "PullError", "PushError", "PystribError", "RankResult", "RemoteError",
           "RunResult", "find_binary", "last_result", "set_binary",
           "load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ip):
    """%load_ext pystributed: registers %%save_for_remote, %%remote and %pystrib,
    and the session magics (dist.py: %dist_init, %%distributed, %%rank[...],
    %%distribute, %px, ...)."""
    from . import dist
    from .magics import register
    register(ip)
    dist.register(ip)


def unload_ipython_extension(ip):
    """%unload_ext pystributed: the magics go away again."""
    from . import dist
    dist.unregister(ip)
    for kind, names in (("cell", ("save_for_remote", "remote")), ("line", ("pystrib",))):
        table = ip.magics_manager.magics.get(kind, {})
        for name in names:
            table.pop(name, None)
