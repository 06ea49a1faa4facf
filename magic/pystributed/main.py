"""The original PyStributed entry point:

    import pystributed.main as runner

    %%save_for_remote
    ...cell...

    runner.main()

Importing this module inside IPython registers the magics (as
%load_ext pystributed does). main() runs the most recently saved cell.
"""

from .errors import PystribError
from . import runner
from .magics import last_saved, register


def _namespace():
    try:
        from IPython import get_ipython
        ip = get_ipython()
    except ImportError:
        ip = None
    if ip is not None:
        return ip.user_ns
    import __main__
    return vars(__main__)


def main(**overrides):
    """Runs the most recently saved cell with the options it was saved with
    (each unset one from the pystrib config), or with overrides: np (or n),
    remote, gpus, timeout, push, pull, pull_all, env, inputs, results,
    config, detach, quiet, verbose, args. Returns the RunResult: job_id,
    state, exit_codes, ranks, results, image, digest, pulled. A failed rank
    raises RemoteError with its traceback."""
    __tracebackhide__ = True
    saved = last_saved()
    if saved is None:
        raise PystribError("no cell saved yet: mark one with %%save_for_remote, then call runner.main()")
    try:
        opts = saved.options.copy(**overrides)
    except (TypeError, ValueError) as e:
        raise PystribError("runner.main(): %s" % e) from None
    return runner.run_cell_file(saved.path, opts, _namespace())


def _register_in_ipython():
    try:
        from IPython import get_ipython
    except ImportError:
        return
    ip = get_ipython()
    if ip is not None:
        register(ip)


_register_in_ipython()
