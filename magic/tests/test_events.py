"""The --json event lines of docs/events.md, fed to EventHandler as pystrib
writes them, and what the cell shows and the RunResult holds."""

import json

import pytest

from pystributed import events, runner
from pystributed.display import Summary
from pystributed.errors import JobInterrupted, JobTimeout, PystribError, RemoteError

DIGEST = "sha256:" + "ab" * 32
REF = "127.0.0.1:5000/cells/user_code:1@" + DIGEST

RUN = [
    '{"event":"context","project_files":3,"project_bytes":2048,"revision":"abc123"}',
    '{"event":"blob","digest":"sha256:11","size":10,"state":"uploaded","sent":10}',
    '{"event":"pushed","reference":"%s","digest":"%s","uploaded_blobs":2,"uploaded_bytes":4096}' % (REF, DIGEST),
    '{"event":"job","id":"20261123-090000-a1b2c3","remote":"none","host":"127.0.0.1","np":2,"image":"%s","runtime":"none"}' % REF,
    '{"event":"status","message":"starting"}',
    '{"event":"output","rank":1,"stream":"stdout","text":"hello from 1\\n"}',
    '{"event":"output","rank":0,"stream":"stdout","text":"hello from 0\\n"}',
    '{"event":"output","rank":0,"stream":"stderr","text":"a warning\\n"}',
    '{"event":"rank_exit","rank":1,"exit_code":0,"duration":0.5}',
    '{"event":"rank_exit","rank":0,"exit_code":0,"duration":0.25}',
    '{"event":"results","path":"/tmp/r/20261123-090000-a1b2c3"}',
    '{"event":"done","id":"20261123-090000-a1b2c3","state":"succeeded","exit_code":0,'
    '"ranks":[{"rank":0,"exit_code":0,"duration":0.25},{"rank":1,"exit_code":0,"duration":0.5}],'
    '"image":"%s","results":"/tmp/r/20261123-090000-a1b2c3","failed_rank":null,"traceback":null}' % REF,
]

TRACEBACK = ('Traceback (most recent call last):\n  File "/pystrib/cell/user_code.py", line 2, in <module>\n'
             '    raise ValueError("boom")\nValueError: boom\n')


def feed(lines, quiet=False):
    out, err = [], []
    h = events.EventHandler(out=out.append, err=err.append, quiet=quiet)
    for line in lines:
        h.feed(line + "\n")
    return h, "".join(out), "".join(err)


def test_a_run_shows_rank_output_prefixed_and_fills_the_result():
    h, out, err = feed(RUN)
    r = h.finish(0)
    assert "[1] hello from 1\n" in out and "[0] hello from 0\n" in out
    assert out.index("[1] hello from 1") < out.index("[0] hello from 0")   # as it arrives
    assert err == "[0] a warning\n"
    assert "pystrib: job 20261123-090000-a1b2c3: 2 ranks on 127.0.0.1 (runtime none)" in out
    assert "pystrib: starting" in out and "3 project files" in out
    assert r.job_id == "20261123-090000-a1b2c3" and r.state == "succeeded" and r.ok
    assert r.exit_codes == [0, 0] and [x.rank for x in r.ranks] == [0, 1]
    assert r.ranks[1].duration == 0.5
    assert r.digest == DIGEST and r.image == REF
    assert r.results == "/tmp/r/20261123-090000-a1b2c3"
    assert r.stdout == {0: "hello from 0\n", 1: "hello from 1\n"} and r.stderr == {0: "a warning\n"}
    runner.check(r, False, "")      # success: no exception


def test_quiet_keeps_only_rank_output():
    _, out, _ = feed(RUN, quiet=True)
    assert "pystrib:" not in out and "[0] hello from 0" in out


def test_bytes_lines_missing_newlines_unknown_events_and_stray_text():
    out, err = [], []
    h = events.EventHandler(out=out.append, err=err.append)
    h.feed(b'{"event":"output","rank":3,"stream":"stdout","text":"no newline"}\n')
    h.feed('{"event":"some_future_event","x":1}\n')
    h.feed('{"event":"output","rank":0,"stream":"stdout","text":"caf\\u00e9 \\u2713\\n","extra":1}\n')
    h.feed("not json at all\n")
    h.feed("\n")
    h.feed('{"event":"warning","message":"config key unknown"}\n')
    assert out == ["[3] no newline\n", "[0] caf\u00e9 \u2713\n"]
    assert err == ["not json at all\n", "pystrib: warning: config key unknown\n"]
    assert h.finish(0).warnings == ["config key unknown"]


def failed_run(state="failed", failed_rank=1, tb=TRACEBACK, code=1):
    lines = RUN[:4] + [
        json.dumps({"event": "output", "rank": 1, "stream": "stderr", "text": "Traceback (most recent call last):\n"}),
        json.dumps({"event": "rank_exit", "rank": 1, "exit_code": 1, "duration": 0.1}),
        json.dumps({"event": "done", "id": "J1", "state": state, "exit_code": code,
                    "ranks": [{"rank": 0, "exit_code": 0, "duration": 0.2},
                              {"rank": 1, "exit_code": 1, "duration": 0.1}],
                    "image": REF, "results": "/tmp/r/J1", "failed_rank": failed_rank,
                    "traceback": tb})]
    h, _, _ = feed(lines)
    return h.finish(code)


def test_a_failed_rank_raises_with_rank_and_remote_traceback():
    r = failed_run()
    with pytest.raises(RemoteError) as e:
        runner.check(r, False, "")
    msg = str(e.value)
    assert "job J1 failed: rank 1 exited with code 1" in msg
    assert "remote traceback (rank 1)" in msg and "ValueError: boom" in msg
    assert e.value.failed_rank == 1 and e.value.rank_exit_code == 1
    assert e.value.result.exit_codes == [0, 1] and e.value.exit_code == 1


def test_without_a_traceback_field_the_rank_stderr_is_used():
    r = failed_run(tb=None)
    with pytest.raises(RemoteError, match="remote traceback \\(rank 1\\):\nTraceback"):
        runner.check(r, False, "")


def test_timeout_cancel_and_lost_are_their_own_errors():
    with pytest.raises(JobTimeout, match="ran out of time"):
        runner.check(failed_run("timeout", None, None, 5), False, "")
    with pytest.raises(RemoteError, match="was cancelled"):
        runner.check(failed_run("cancelled", None, None, 130), False, "")
    with pytest.raises(RemoteError, match="was lost"):
        runner.check(failed_run("lost", None, None, 4), False, "")


def test_an_error_event_becomes_pystrib_error_with_its_hint():
    h, _, _ = feed(['{"event":"error","message":"cannot reach registry \'127.0.0.1:1\': connection refused",'
                    '"hint":"is the registry running?","exit_code":3}'])
    with pytest.raises(PystribError) as e:
        runner.check(h.finish(3), False, "pystrib: cannot reach registry\n")
    assert "cannot reach registry '127.0.0.1:1'" in str(e.value)
    assert "hint: is the registry running?" in str(e.value) and e.value.exit_code == 3
    assert not isinstance(e.value, RemoteError)


def test_no_done_and_no_error_event_shows_stderr():
    h, _, _ = feed(RUN[:2])
    with pytest.raises(PystribError, match="exited with code 2 without finishing") as e:
        runner.check(h.finish(2), False, "pystrib: run: unknown option '--bogus'\n")
    assert "unknown option '--bogus'" in str(e.value)


def test_interrupt_says_whether_the_job_was_cancelled():
    lines = RUN[:4] + ['{"event":"done","id":"20261123-090000-a1b2c3","state":"cancelled","exit_code":130,'
                       '"ranks":[],"image":"x","results":null,"failed_rank":null,"traceback":null}']
    h, _, _ = feed(lines)
    said = []
    with pytest.raises(JobInterrupted, match="remote job 20261123-090000-a1b2c3 was cancelled"):
        runner.check(h.finish(130), True, "", err=said.append)
    assert "cancelled" in said[0]
    h, _, _ = feed(RUN[:4])
    with pytest.raises(JobInterrupted, match="may still be running.*%pystrib cancel"):
        runner.check(h.finish(130), True, "", err=said.append)
    h, _, _ = feed(RUN[:2])
    with pytest.raises(JobInterrupted, match="before any job was submitted"):
        runner.check(h.finish(130), True, "", err=said.append)


def test_summary_html_and_text():
    h, _, _ = feed(RUN)
    r = h.finish(0)
    r.pulled = {"total": 1}
    s = Summary(r)
    html = s._repr_html_()
    assert html.count("<tr>") == 3 and "<th>image digest</th>" in html
    assert "sha256:abababababab" in html and "/tmp/r/20261123-090000-a1b2c3" in html
    assert "<td>1</td><td>0</td><td>0.5 s</td>" in html and "pulled: total" in html
    text = repr(s)
    assert "job 20261123-090000-a1b2c3 on 127.0.0.1: succeeded" in text
    assert "0.2 s" in text and DIGEST in text
    r.results = "<script>"
    assert "<script>" not in Summary(r)._repr_html_()


def test_relative_results_path_and_no_failed_rank(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    h, _, _ = feed(['{"event":"job","id":"J","remote":"none","host":"h","np":1,"image":null,"runtime":"none"}',
                    '{"event":"results","path":"./pystrib-results/J"}',
                    '{"event":"done","id":"J","state":"succeeded","exit_code":0,"ranks":[{"rank":0,'
                    '"exit_code":0,"duration":1.5}],"image":null,"results":"./pystrib-results/J",'
                    '"failed_rank":-1,"traceback":null,"reason":null}'])
    r = h.finish(0)
    assert r.results == str(tmp_path / "pystrib-results" / "J")
    assert r.failed_rank is None and r.image is None and r.digest is None
    assert "none (runtime none)" in Summary(r)._repr_html_()
    assert "image digest: none (runtime none)" in repr(Summary(r))
