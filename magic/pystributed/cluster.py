"""pystributed.Cluster: ipyparallel's interface on a pystrib session.

    c = pystributed.Cluster(n=4)            # remote, runtime, gpus: None is the config's
    c.execute("a = rank")                   # every rank; targets=0, [0, 2], slice(None)
    c.push({"a": 10}); c.push("a", 10, 0)
    c.pull("a")                             # one value per rank
    c["a"] = 10; c["a"]
    c[0].pull("a"); c[:].execute("...")
    c.scatter("a", range(10)); c.gather("a")
    c.map("lambda x: x*x", range(10))
    c.activate()                            # %px and %autopx use it
    c.shutdown()

The session starts at the first use (or start()); as ipyparallel's engines,
it keeps every rank's variables from one call to the next."""

from . import options, pool
from .errors import PystribError
from .session import Output, parse_ranks

_active = {"cluster": None}


def active():
    """The Cluster %px uses, or None."""
    return _active["cluster"]


class NotDefined(NameError):
    pass


def targets_of(spec, world_size):
    """A list of ranks from targets: None or 'all' (every rank), an int, a
    slice, a list, or text ('0,2-3', '[0,1]', '::2')."""
    every = list(range(world_size))
    if spec is None or spec == "all":
        return every
    if isinstance(spec, bool):
        raise ValueError("targets must be ranks, not %r" % spec)
    if isinstance(spec, int):
        return parse_ranks(str(spec), world_size)
    if isinstance(spec, slice):
        return every[spec]
    if isinstance(spec, (list, tuple, range)):
        return parse_ranks(",".join(str(int(r)) for r in spec), world_size)
    text = str(spec).strip()
    if text == "all":
        return every
    if ":" in text:
        parts = [int(p) if p.strip() else None for p in text.strip("[]").split(":")]
        return every[slice(*parts)]
    return parse_ranks(text, world_size)


class View:
    """Some ranks of a Cluster (c[0], c[1:], c[:]): the same methods, on them.
    A view of one rank (c[0]) pulls one value, not a list."""

    def __init__(self, cluster, targets, single=False):
        self.cluster = cluster
        self.targets = targets
        self.single = single

    def execute(self, code, block=True):
        return self.cluster.execute(code, self.targets)

    def push(self, name_or_dict, value=None):
        return self.cluster.push(name_or_dict, value, self.targets)

    def pull(self, names):
        got = self.cluster.pull(names, self.targets)
        return got[0] if self.single else got

    def scatter(self, name, sequence):
        return self.cluster.scatter(name, sequence, self.targets)

    def gather(self, name):
        return self.cluster.gather(name, self.targets)

    def map(self, function, sequence):
        return self.cluster.map(function, sequence, self.targets)

    def __getitem__(self, name):
        return self.pull(name)

    def __setitem__(self, name, value):
        self.push(name, value)

    def __repr__(self):
        return "<View of ranks %s of %r>" % (self.targets, self.cluster)


class Cluster:
    """N ranks on the remote host, in a pystrib session (see the module)."""

    def __init__(self, n=None, remote=None, runtime=None, gpus=None, config=None, env=None,
                 idle_timeout=None, start_timeout=None):
        self.options = options.SessionOptions(np=n, remote=remote, runtime=runtime, gpus=gpus,
                                              config=config, env=env or [],
                                              idle_timeout=idle_timeout,
                                              start_timeout=start_timeout)
        self.session = None

    # ---------------------------------------------------------- life

    def start(self):
        """Starts (or reattaches to) the session; returns self."""
        if self.session is None or not self.session.alive:
            use = "cluster:%s" % (self.options.np or "default")
            self.session, _ = pool.open_session(use, self.options, _user_ns())
        return self

    # ipyparallel's names for the same.
    def start_and_connect_sync(self, activate=False):
        self.start()
        if activate:
            self.activate()
        return self

    start_cluster_sync = start

    def connect_client_sync(self):
        return self.start()

    def wait_for_engines(self, n=None, timeout=None):
        return self.start()

    @property
    def ids(self):
        return list(range(self._s().np))

    def _s(self):
        self.start()
        return self.session

    def activate(self):
        """%px, %%px and %autopx run on this cluster from now on."""
        _active["cluster"] = self
        return self

    def shutdown(self):
        """Stops the session: its ranks and their variables are gone."""
        if self.session is not None:
            pool.drop(self.session, stop=True)
            self.session = None
        if _active["cluster"] is self:
            _active["cluster"] = None

    stop_cluster_sync = shutdown

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.shutdown()

    # ---------------------------------------------------------- work

    def _targets(self, targets):
        return targets_of(targets, self._s().np)

    def execute(self, code, targets=None, timeout=0):
        """Runs code on the targets (every rank by default), the output shown
        as it comes; a rank that raises is a RemoteError."""
        __tracebackhide__ = True
        s = self._s()
        ranks = self._targets(targets)
        return s.execute(code, ranks=None if len(ranks) == s.np else ranks, timeout=timeout,
                         output=Output())

    def push(self, name_or_dict, value=None, targets=None):
        if isinstance(name_or_dict, dict):
            values = name_or_dict
        else:
            values = {str(name_or_dict): value}
        self._s().push(values, self._targets(targets))

    def pull(self, names, targets=None):
        """One value per target rank (a tuple per rank for a list of names);
        NameError naming the ranks where a name is not defined."""
        many = not isinstance(names, str)
        wanted = list(names) if many else [names]
        got = self._s().pull(wanted, self._targets(targets))
        out, missing = [], {}
        for rank in sorted(got):
            values, miss, errors = got[rank]
            for name in miss:
                missing.setdefault(name, []).append(rank)
            for name, why in errors.items():
                raise PystribError("'%s' on rank %s cannot be pickled: %s" % (name, rank, why))
            out.append(tuple(values.get(n) for n in wanted) if many else values.get(wanted[0]))
        if missing:
            raise NotDefined("; ".join("'%s' is not defined on rank%s %s" % (
                name, "" if len(r) == 1 else "s", ",".join(map(str, r)))
                for name, r in missing.items()))
        return out

    def scatter(self, name, sequence, targets=None):
        """Deals sequence over the targets: rank k gets the k-th contiguous slice."""
        if not isinstance(sequence, (list, tuple)) and type(sequence).__name__ != "ndarray":
            sequence = list(sequence)
        self._s().scatter(name, sequence, self._targets(targets))

    def gather(self, name, targets=None):
        """The targets' name joined in rank order (a list, or an array)."""
        return self._s().gather(name, self._targets(targets))

    def map(self, function, sequence, targets=None):
        """[f(x) for x in sequence], computed on the ranks: function is the
        text of a function the ranks can evaluate ('lambda x: x*x', or the
        name of one defined there)."""
        if not isinstance(function, str):
            raise TypeError("map wants the function as text ('lambda x: x*x' or a name "
                            "defined on the ranks): functions of the notebook do not travel")
        ranks = self._targets(targets)
        self.scatter("_pystrib_map_in", sequence, ranks)
        self._s().execute("_pystrib_map_out = list(map(%s, _pystrib_map_in))\n"
                          "del _pystrib_map_in\n" % function, ranks=ranks, name="map.py",
                          output=Output())
        out = self.gather("_pystrib_map_out", ranks)
        self._s().execute("del _pystrib_map_out\n", ranks=ranks, output=Output())
        return out

    def __getitem__(self, key):
        if isinstance(key, str):
            return self.pull(key)
        if isinstance(key, int):
            return View(self, self._targets(key), single=True)
        return View(self, self._targets(key))

    def __setitem__(self, key, value):
        if not isinstance(key, str):
            raise TypeError("c['name'] = value pushes a variable; c[0]['name'] = value to one rank")
        self.push(key, value)

    def __len__(self):
        return self._s().np

    def __repr__(self):
        s = self.session
        return "<pystributed.Cluster %s>" % (
            "session %s, %s ranks" % (s.id, s.np) if s is not None else "not started (n=%s)" % self.options.np)


def _user_ns():
    try:
        from IPython import get_ipython
        ip = get_ipython()
    except ImportError:
        return None
    return ip.user_ns if ip is not None else None
