"""--push and --pull: notebook variables to the ranks and back.

Pushed values go in one pickle, inputs/pystrib_push.pkl, which the rank
bootstrap (src/remote/bootstrap.py) loads into the cell's globals. Pulled
values come back as results/.pystrib/pull.rank.N.pkl, written by the
bootstrap when PYSTRIB_PULL names them."""

import keyword
import os
import pickle
import pickletools

from .errors import PullError, PushError

PUSH_FILE = "pystrib_push.pkl"
PROTOCOL = 4            # the bootstrap's; Python 3.4+ reads it
INJECTED = ("rank", "world_size", "__process_id__")


def split_names(spec, option):
    """'a, b' -> ['a', 'b'], each a valid identifier, or a PushError/PullError-worthy ValueError."""
    if isinstance(spec, (list, tuple)):
        names = [str(n).strip() for n in spec]
    else:
        names = [n.strip() for n in str(spec).split(",")]
    names = [n for n in names if n]
    bad = [n for n in names if not n.isidentifier() or keyword.iskeyword(n)]
    if bad:
        raise ValueError("%s: %s %s not a Python name" % (
            option, ", ".join("'%s'" % b for b in bad), "is" if len(bad) == 1 else "are"))
    seen = []
    for n in names:
        if n not in seen:
            seen.append(n)
    return seen


def _main_references(data):
    """The __main__.NAME globals a pickle refers to: a class or function
    defined in the notebook, which a rank cannot import."""
    found = []
    memo = {}
    recent = []         # values the last opcodes pushed (None: not a string)
    try:
        for op, arg, _ in pickletools.genops(data):
            name = op.name
            if name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE",
                        "SHORT_BINSTRING", "BINSTRING", "STRING"):
                recent.append(arg)
            elif name == "MEMOIZE":
                memo[len(memo)] = recent[-1] if recent else None
            elif name in ("BINGET", "LONG_BINGET", "GET"):
                recent.append(memo.get(int(arg)))
            elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
                memo[int(arg)] = recent[-1] if recent else None
            elif name == "STACK_GLOBAL":
                if len(recent) >= 2 and recent[-2] == "__main__":
                    found.append(str(recent[-1]))
                recent.append(None)
            elif name in ("GLOBAL", "INST"):
                module, _, qual = str(arg).partition(" ")
                if module == "__main__":
                    found.append(qual)
                recent.append(None)
            else:
                recent.append(None)
            del recent[:-4]
    except Exception:   # a pickle we cannot walk: let the ranks tell
        return []
    return found


def pickle_push(names, namespace):
    """The bytes of inputs/pystrib_push.pkl for these names of namespace.
    Every problem (undefined, unpicklable, defined in the notebook's
    __main__, a name the bootstrap sets itself) is collected and raised as
    one PushError naming each variable, before anything runs."""
    problems = []
    values = {}
    for name in names:
        if name in INJECTED:
            problems.append("'%s' is set by pystrib on every rank (rank, world_size, "
                            "__process_id__); push it under another name" % name)
            continue
        if name not in namespace:
            problems.append("'%s' is not defined in the notebook" % name)
            continue
        value = namespace[name]
        try:
            data = pickle.dumps(value, protocol=PROTOCOL)
        except Exception as e:  # pickling may raise anything a __reduce__ does
            problems.append("'%s' cannot be pickled: %s: %s" % (name, type(e).__name__, e))
            continue
        local = _main_references(data)
        if local:
            problems.append("'%s' refers to %s, defined in the notebook itself, which "
                            "the ranks cannot import: define it in a module of the "
                            "project, or push plain data" % (
                                name, ", ".join("'%s'" % q for q in sorted(set(local)))))
            continue
        values[name] = value
    if problems:
        raise PushError("cannot push: " + "; ".join(problems),
                        hint="nothing was sent; fix the variables above or drop them from --push")
    return pickle.dumps(values, protocol=PROTOCOL)


def write_push(names, namespace, directory):
    """Writes DIRECTORY/pystrib_push.pkl (see pickle_push); returns its path."""
    data = pickle_push(names, namespace)
    path = os.path.join(directory, PUSH_FILE)
    with open(path, "wb") as f:
        f.write(data)
    return path


def pull_dirs(results):
    """Where pull.rank.N.pkl may be under the results path of the done event."""
    return [os.path.join(results, ".pystrib"), os.path.join(results, "results", ".pystrib")]


def read_pull(results, rank):
    """The record the bootstrap wrote for rank, or a PullError."""
    tried = []
    for d in pull_dirs(results):
        path = os.path.join(d, "pull.rank.%d.pkl" % rank)
        tried.append(path)
        if not os.path.exists(path):
            continue
        try:
            with open(path, "rb") as f:
                record = pickle.load(f)
        except Exception as e:
            raise PullError("cannot read the values pulled from rank %d (%s): %s: %s"
                            % (rank, path, type(e).__name__, e),
                            hint="a class of a pulled value must be importable here too")
        if not isinstance(record, dict) or "values" not in record:
            raise PullError("%s is not a pull record" % path)
        return record
    raise PullError("rank %d sent no pulled values back (looked for %s)" % (rank, " and ".join(tried)),
                    hint="the rank may have ended before its cell finished; see its output above")


def collect_pull(results, names, nranks, all_ranks):
    """Reads the pull records and returns (values, problems): values maps a
    name to rank 0's value, or to a list with one value per rank when
    all_ranks; problems lists, per name, why it did not come back."""
    ranks = list(range(nranks)) if all_ranks else [0]
    records = [read_pull(results, r) for r in ranks]
    if names == "*":
        wanted = []
        for rec in records:
            for n in sorted(rec.get("values", {})) + list(rec.get("missing", [])) + sorted(rec.get("errors", {})):
                if n not in wanted:
                    wanted.append(n)
    else:
        wanted = list(names)
    values, problems = {}, []
    for name in wanted:
        got, why = [], []
        for rank, rec in zip(ranks, records):
            if name in rec.get("values", {}):
                got.append(rec["values"][name])
            elif name in rec.get("errors", {}):
                why.append("rank %d could not pickle it (%s)" % (rank, rec["errors"][name]))
            else:
                why.append("rank %d" % rank)
        if why:
            undefined = [w for w in why if "could not pickle" not in w]
            text = []
            if undefined:
                text.append("the cell did not define '%s' (%s)" % (name, ", ".join(undefined)))
            text += ["'%s': %s" % (name, w) for w in why if "could not pickle" in w]
            problems.append("; ".join(text))
            continue
        values[name] = got if all_ranks else got[0]
    return values, problems
