"""The option table (pystributed/options.py) is the one source of the
options: every option in it is in the help and the magics' docstrings,
parses, is a JobOptions field and a runner.main() keyword, round-trips
through JobOptions.flags(), and reaches pystrib's argv; an option added to
the table alone reaches all of them."""

import dataclasses
import os
import re
import shlex

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

import pystributed
from pystributed import magics, options
from pystributed.errors import PystribError
from pystributed.magics import parse_options
from pystributed.options import OPTIONS, REPEAT, REST, SWITCH, NAMES, Option, OptionTable

JOB = "20261123-101010-00beef"


def sample(o):
    """A valid value of option o as magic words."""
    if o.kind == SWITCH:
        return [o.flags[-1]]
    if o.kind == REST:
        return ["--", "x", "3"]
    if o.kind == NAMES:
        return [o.flags[-1], "a1"]
    if o.kind == REPEAT:
        return [o.flags[-1], "K=3"]
    return [o.flags[-1], "3"]


def line_of(words):
    return " ".join(shlex.quote(w) for w in words)


def all_options_line(leave_out=()):
    words, rest = [], []
    for o in OPTIONS:
        if o.name not in leave_out:
            (rest if o.kind == REST else words).extend(sample(o))
    return line_of(words + rest)


def flat(text):
    return re.sub(r"\s+", " ", text)


def run(ip, src):
    with capture_output() as cap:
        res = ip.run_cell(src)
    return res, cap


def done_events(fake, tmp_path):
    fake.script({"event": "job", "id": JOB, "np": 1},
                {"event": "done", "id": JOB, "state": "succeeded", "exit_code": 0, "ranks": [],
                 "results": str(tmp_path / "r"), "failed_rank": None, "traceback": None})


def pystrib_words(argv):
    """(the words pystrib got besides `--json run CELL`, CELL)."""
    i = argv.index("--json")
    assert argv[i + 1] == "run"
    return argv[:i] + argv[i + 3:], argv[i + 2]


def test_job_options_is_a_dataclass_of_the_tables_fields():
    fields = [f.name for f in dataclasses.fields(pystributed.JobOptions)]
    assert fields == [o.name for o in OPTIONS if o.field]
    assert list(pystributed.JobOptions.FIELDS) == fields
    assert [o.name for o in OPTIONS if not o.field] == ["file"]
    opts = pystributed.JobOptions()
    for o in OPTIONS:
        if o.field:
            assert getattr(opts, o.name) == o.empty()
    # every field is a keyword of runner.main() (through copy), and only those
    for name in fields:
        assert getattr(opts.copy(**{name: getattr(opts, name)}), name) == getattr(opts, name)
    with pytest.raises(TypeError, match="unknown option 'file'"):
        opts.copy(file="x.py")


def test_every_option_is_in_the_help_and_the_magics_docstrings(ip):
    text = flat(magics.OPTIONS_HELP)
    assert magics.OPTIONS_HELP == options.TABLE.help()
    for o in OPTIONS:
        assert flat("  " + o.synopsis() + " " + o.help) in text
    for name, magic in (("remote", "%%remote"), ("save_for_remote", "%%save_for_remote")):
        doc = ip.find_cell_magic(name).__doc__
        assert magics.OPTIONS_HELP in doc and "%s [options] [-- ARGS]" % magic in doc
        with pytest.raises(UsageError) as e:
            parse_options("-h", magic)
        assert str(e.value) == "usage: %s [options] [-- ARGS]\n%s" % (magic, magics.OPTIONS_HELP)
    res, cap = run(ip, "%%remote?")
    assert res.success and "--pull-all" in cap.stdout and "ranks (mpirun -np)" in cap.stdout


@pytest.mark.parametrize("o", OPTIONS, ids=lambda o: o.name)
def test_every_option_parses_and_round_trips_through_flags(o):
    opts, path = parse_options(line_of(sample(o)))
    if not o.field:
        assert path == "3" and opts == pystributed.JobOptions()
        return
    assert path is None
    value = getattr(opts, o.name)
    assert value != o.empty()
    assert opts == pystributed.JobOptions(**{o.name: value})
    again, _ = parse_options(opts.flags())
    assert again == opts


def test_all_options_at_once_round_trip():
    opts, path = parse_options(all_options_line())
    assert path == "3"
    assert opts == pystributed.JobOptions(
        np=3, remote="3", gpus="3", timeout=3, results="3", env=["K=3"], pull=["a1"],
        pull_all=True, push=["a1"], inputs=[os.path.abspath("K=3")], detach=True,
        config="3", quiet=True, verbose=True, args=["x", "3"])
    assert parse_options(opts.flags())[0] == opts
    assert opts.copy() == opts and opts.copy() is not opts and opts.copy().env is not opts.env


# How the options whose way to pystrib is a function of their own arrive.
VIA_FUNCTION = {
    "pull": ["--env", "PYSTRIB_PULL=a1"],
    "pull_all": ["--env", "PYSTRIB_PULL=*"],
    "push": ["--input", "PUSH"],
}


@pytest.mark.parametrize("o", OPTIONS, ids=lambda o: o.name)
def test_every_option_reaches_pystrib(ip, fake_pystrib, tmp_path, o):
    done_events(fake_pystrib, tmp_path)
    ip.user_ns["a1"] = 1
    run(ip, "%%%%remote %s\nx = 1\n" % line_of(sample(o)))
    got, cell = pystrib_words(fake_pystrib.argv)
    assert cell == str(tmp_path / ("3" if o.name == "file" else "user_code.py"))
    got = ["PUSH" if w.endswith("/pystrib_push.pkl") else w for w in got]
    if o.pystrib is None:
        expected = []
    elif callable(o.pystrib):
        expected = VIA_FUNCTION[o.name]
    elif o.kind == REST:
        expected = ["--", "x", "3"]
    elif o.kind == SWITCH:
        expected = [o.pystrib]
    elif o.name == "inputs":
        expected = [o.pystrib, str(tmp_path / "K=3")]
    else:
        expected = [o.pystrib, "K=3" if o.kind == REPEAT else "3"]
    assert got == expected


def test_all_options_at_once_reach_pystrib_in_order(ip, fake_pystrib, tmp_path):
    done_events(fake_pystrib, tmp_path)
    ip.user_ns["a1"] = 1
    run(ip, "%%%%remote %s\nx = 1\n" % all_options_line(leave_out=("detach",)))   # no pull with it
    argv = fake_pystrib.argv
    push = [w for w in argv if w.endswith("/pystrib_push.pkl")]
    assert argv == ["-c", "3", "--json", "run", str(tmp_path / "3"),
                    "-n", "3", "--remote", "3", "--gpus", "3", "--timeout", "3",
                    "--results", "3", "--env", "K=3", "--env", "PYSTRIB_PULL=a1"] + \
        ["--input"] + push + ["--input", str(tmp_path / "K=3"), "--", "x", "3"]


def test_a_bad_value_is_refused_from_any_source(ip, fake_pystrib):
    with pytest.raises(ValueError, match="--env wants KEY=VALUE, not 'NOEQUALS'"):
        pystributed.JobOptions(env="NOEQUALS")
    with pytest.raises(ValueError, match="'1a' is not a Python name"):
        pystributed.JobOptions().copy(push="1a")
    run(ip, "import pystributed.main as runner\n")
    run(ip, "%%save_for_remote\nx = 1\n")
    res, _ = run(ip, "runner.main(env='NOEQUALS')\n")
    assert isinstance(res.error_in_exec, PystribError)
    assert "runner.main(): --env wants KEY=VALUE" in str(res.error_in_exec)
    assert not fake_pystrib.ran()


PRIORITY = Option("priority", ("-p", "--priority"), "P", "the job's priority on the host",
                  pystrib="--priority")


@pytest.fixture
def extended(monkeypatch):
    """The table with one more option, added nowhere else (after -- ARGS,
    which still goes last)."""
    table = OptionTable(OPTIONS + (PRIORITY,))
    monkeypatch.setattr(options, "TABLE", table)
    return table


def test_an_option_added_to_the_table_alone_reaches_everything(ip, fake_pystrib, tmp_path, extended):
    J = extended.job_options
    assert "priority" in [f.name for f in dataclasses.fields(J)] and J().priority is None
    assert flat("  -p, --priority P the job's priority on the host") in flat(extended.help())
    with pytest.raises(UsageError, match="(?s)usage: %%remote.*-p, --priority P"):
        parse_options("--help")
    with pytest.raises(UsageError, match="(?s)unrecognized arguments: --bogus.*--priority P"):
        parse_options("--bogus")
    # the magic line -> JobOptions -> the flags shown, and back
    res, cap = run(ip, "%%save_for_remote -p 7 -n 2 -- a\nx = 1\n")
    assert res.success, res.error_in_exec
    assert "(options: -n 2 -p 7 -- a)" in cap.stdout
    saved = magics.last_saved().options
    assert isinstance(saved, J) and saved.priority == "7"
    assert parse_options(saved.flags())[0] == saved
    # -> pystrib's argv, from the magic and from runner.main()'s keyword
    done_events(fake_pystrib, tmp_path)
    res, _ = run(ip, "%%remote --priority 7 -- a\nx = 1\n")
    assert pystrib_words(fake_pystrib.argv)[0] == ["--priority", "7", "--", "a"]
    run(ip, "import pystributed.main as runner\n")
    res, _ = run(ip, "%%save_for_remote -p 7\nx = 1\n")
    res, _ = run(ip, "runner.main(priority=9)\n")
    assert pystrib_words(fake_pystrib.argv)[0] == ["--priority", "9"]


def test_a_table_refuses_two_options_of_one_name():
    with pytest.raises(ValueError, match="unique"):
        OptionTable(OPTIONS + (dataclasses.replace(PRIORITY, name="np"),))
