"""The exceptions the extension raises; each message says what failed and what to do."""


class PystribError(Exception):
    """pystrib could not do what was asked (configuration, registry, SSH, usage).

    message: what failed; hint: what to do next (may be None); exit_code:
    the pystrib binary's exit code (None when it never ran); stderr: the last
    lines pystrib wrote to stderr, when they explain more than the message.
    """

    def __init__(self, message, hint=None, exit_code=None, stderr=None, result=None):
        self.message = message
        self.hint = hint
        self.exit_code = exit_code
        self.stderr = stderr
        self.result = result
        text = message
        if hint:
            text += "\nhint: " + hint
        if stderr:
            text += "\npystrib's stderr (last lines):\n" + stderr.rstrip("\n")
        super().__init__(text)

    def _render_traceback_(self):
        # IPython shows these lines instead of the extension's own frames:
        # what failed is remote or in pystrib, not in this package.
        return ("%s: %s" % (type(self).__name__, self)).splitlines()


class BinaryNotFound(PystribError):
    """The pystrib binary is not on PATH nor where PYSTRIB_BIN or the config say."""


class PushError(PystribError):
    """A --push name is not defined, cannot be pickled, or would not unpickle remotely."""


class PullError(PystribError):
    """A --pull name was not defined by the cell, or its value could not come back."""


class RemoteError(PystribError):
    """The job ran and did not succeed: a rank failed, it timed out, was cancelled or lost.

    job_id, state, failed_rank, rank_exit_code and traceback (the last lines
    of the failed rank's stderr) describe what happened remotely; result is
    the RunResult with every rank's exit code and the results path.
    """

    def __init__(self, message, result=None, hint=None, exit_code=None):
        self.job_id = result.job_id if result else None
        self.state = result.state if result else None
        self.failed_rank = result.failed_rank if result else None
        self.rank_exit_code = None
        self.traceback = result.traceback if result else None
        if result is not None and self.failed_rank is not None:
            for r in result.ranks:
                if r.rank == self.failed_rank:
                    self.rank_exit_code = r.exit_code
        super().__init__(message, hint=hint, exit_code=exit_code, result=result)


class JobTimeout(RemoteError):
    """The job ran past its --timeout and was stopped."""


class JobInterrupted(KeyboardInterrupt):
    """The kernel was interrupted while a job ran; pystrib was told to cancel it.

    A KeyboardInterrupt, so "Run all" stops here as it does for any interrupt.
    """

    def __init__(self, message, result=None):
        self.result = result
        self.job_id = result.job_id if result else None
        super().__init__(message)

    def _render_traceback_(self):
        return ["%s: %s" % (type(self).__name__, self)]
