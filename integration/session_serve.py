"""The driver of t0701's serve checks: speaks `pystrib --json session serve`'s
framing (docs/events.md) on its stdin and stdout, as the notebook will.

    session_serve.py PYSTRIB CONFIG SESSION MODE

MODE values: push values, use them in a cell, pull them back (16 MiB from
one rank), status; arrays: a 100 MiB numpy array pushed to every rank,
pulled back from rank 1, scattered and gathered, and a list scattered,
changed by the ranks and gathered, each checked value by value and by its
sha256 on both sides (t0702; numpy on both sides); bench: 30 trivial execs, prints
the median in ms; drop: a cell printing 40 lines while every connection's
sshd (children of the listener in $BED_DIR/ssh/sshd.pid) is killed after
the 5th line, with a second exec queued behind it: each line must arrive
exactly once, and the queued exec runs once after the reconnection. Prints "ok ..." lines,
"FAIL ..." on a failure, exits 1 if any failed."""
import json
import os
import pickle
import signal
import statistics
import subprocess
import sys
import time

pystrib, config, session, mode = sys.argv[1:5]
proc = subprocess.Popen([pystrib, "-c", config, "--json", "session", "serve", session],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
failed = 0


def send(msg, payload=b""):
    if payload:
        msg["bytes"] = len(payload)
    proc.stdin.write(json.dumps(msg).encode() + b"\n" + payload)
    proc.stdin.flush()


def recv():
    line = proc.stdout.readline()
    if not line:
        raise SystemExit("FAIL serve ended: exit %s" % proc.wait())
    msg = json.loads(line)
    if msg.get("bytes"):
        msg["payload"] = proc.stdout.read(msg["bytes"])
    return msg


def until_done(rid, seen=None):
    """Messages for request rid up to its done (or error)."""
    out = []
    while True:
        m = recv()
        if seen is not None:
            seen.append(m)
        if m.get("id") == rid or m.get("op") == "serve":
            out.append(m)
        if m.get("id") == rid and m.get("op") in ("done", "error"):
            return out


def check(name, cond, detail=""):
    global failed
    if cond:
        print("ok", name)
    else:
        failed = 1
        print("FAIL", name, detail)


def values():
    data = {"v": list(range(1000)), "s": "text"}
    send({"op": "push", "id": "p1"}, pickle.dumps(data, protocol=4))
    done = until_done("p1")[-1]
    check("push: done ok", done.get("status") == "ok", done)
    send({"op": "exec", "id": "e1", "code": "print(sum(v), s)\n"})
    msgs = until_done("e1")
    texts = sorted(m["text"] for m in msgs if m.get("op") == "output")
    check("push: the ranks see the value", texts == ["499500 text\n"] * 2, texts)
    send({"op": "exec", "id": "e2", "code": "w = [rank] * 3\n"})
    until_done("e2")
    send({"op": "pull", "id": "u1", "names": ["w", "nope"]})
    msgs = until_done("u1")
    vals = [m for m in msgs if m.get("op") == "value"]
    got = {m["rank"]: pickle.loads(m["payload"]) for m in vals}
    check("pull: one value per rank, unpickled", got == {0: {"w": [0, 0, 0]}, 1: {"w": [1, 1, 1]}}, got)
    check("pull: missing names said", all(m.get("missing") == ["nope"] for m in vals), vals)
    big = bytes(range(256)) * (64 << 10)  # 16 MiB
    send({"op": "push", "id": "p2"}, pickle.dumps({"big": big}, protocol=4))
    until_done("p2")
    send({"op": "pull", "id": "u2", "names": ["big"], "ranks": [1]})
    msgs = until_done("u2")
    vals = [m for m in msgs if m.get("op") == "value"]
    check("pull: 16 MiB back intact from rank 1",
          len(vals) == 1 and pickle.loads(vals[0]["payload"])["big"] == big)
    send({"op": "status", "id": "st"})
    st = until_done_status("st")
    check("status: idle with 2 ranks", st.get("state") == "idle" and len(st.get("ranks", [])) == 2, st)


def outputs(rid):
    """The output of exec rid, by rank, and its done."""
    texts = {}
    msgs = until_done(rid)
    for m in msgs:
        if m.get("op") == "output":
            texts[m["rank"]] = texts.get(m["rank"], "") + m["text"]
    return texts, msgs[-1]


def arrays():
    import hashlib
    import numpy as np
    signal.signal(signal.SIGALRM, lambda *_: sys.exit("FAIL arrays: no answer in 180 s"))
    signal.alarm(180)
    sha = lambda x: hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()
    a = np.frombuffer(np.random.default_rng(14).bytes(100 << 20), dtype=np.int64)
    line = "%s %s %s\n" % (a.dtype, a.shape, sha(a))
    digest = "import hashlib\nsha = lambda x: hashlib.sha256(x.tobytes()).hexdigest()\n"
    send({"op": "push", "id": "a1"}, pickle.dumps({"a": a}, protocol=4))
    done = until_done("a1")[-1]
    check("push: 100 MiB numpy array, done ok", done.get("status") == "ok", done)
    send({"op": "exec", "id": "a2", "code": digest + "print(a.dtype, a.shape, sha(a))\n"})
    texts, _ = outputs("a2")
    check("push: each rank has the array, its sha256 the same", texts == {0: line, 1: line}, texts)
    send({"op": "pull", "id": "a3", "names": ["a"], "ranks": [1]})
    vals = [m for m in until_done("a3") if m.get("op") == "value"]
    back = pickle.loads(vals[0]["payload"])["a"] if len(vals) == 1 else None
    check("pull: 100 MiB back from rank 1, equal value by value and by sha256",
          back is not None and back.dtype == a.dtype and np.array_equal(back, a) and sha(back) == sha(a))
    del back, vals
    send({"op": "scatter", "id": "a4", "name": "part"}, pickle.dumps(a, protocol=4))
    done = until_done("a4")[-1]
    check("scatter: 100 MiB numpy array, done ok", done.get("status") == "ok", done)
    send({"op": "exec", "id": "a5", "code": digest + "print(len(part), sha(part))\n"})
    texts, _ = outputs("a5")
    want = {r: "%d %s\n" % (len(h), sha(h)) for r, h in enumerate(np.array_split(a, 2))}
    check("scatter: each rank has its half (length and sha256)", texts == want, (texts, want))
    send({"op": "gather", "id": "a6", "name": "part"})
    vals = [m for m in until_done("a6") if m.get("op") == "value"]
    back = pickle.loads(vals[0]["payload"]) if len(vals) == 1 else None
    check("gather: the halves joined are the array, value by value and by sha256",
          isinstance(back, np.ndarray) and back.dtype == a.dtype and np.array_equal(back, a) and sha(back) == sha(a))
    del back, vals
    send({"op": "scatter", "id": "l1", "name": "items"}, pickle.dumps(list(range(7)), protocol=4))
    until_done("l1")
    send({"op": "exec", "id": "l2", "code": "print(items)\nitems = [x * 10 + rank for x in items]\n"})
    texts, _ = outputs("l2")
    check("scatter: a list of 7 dealt 4 and 3", texts == {0: "[0, 1, 2, 3]\n", 1: "[4, 5, 6]\n"}, texts)
    send({"op": "gather", "id": "l3", "name": "items"})
    vals = [m for m in until_done("l3") if m.get("op") == "value"]
    back = pickle.loads(vals[0]["payload"]) if len(vals) == 1 else None
    check("gather: the ranks' changed lists joined in rank order",
          back == [0, 10, 20, 30, 41, 51, 61], back)
    send({"op": "exec", "id": "l4", "code": "del a, part\n"})
    until_done("l4")
    signal.alarm(0)


def until_done_status(rid):
    while True:
        m = recv()
        if m.get("id") == rid:
            return m


def bench():
    times = []
    for i in range(30):
        t = time.monotonic()
        send({"op": "exec", "id": i, "code": "print(rank)\n"})
        until_done(i)
        times.append((time.monotonic() - t) * 1000)
    print("median %.1f ms" % statistics.median(times))


def kill_connections():
    bed = os.environ["BED_DIR"]
    listener = open(os.path.join(bed, "ssh", "sshd.pid")).read().strip()
    kids = subprocess.run(["pgrep", "-P", listener], capture_output=True, text=True).stdout.split()
    for k in kids:
        os.kill(int(k), signal.SIGKILL)
    return kids


def drop():
    code = "import time\nfor i in range(40):\n    print('line', i, flush=True)\n    time.sleep(0.05)\n"
    send({"op": "exec", "id": "d1", "code": code, "ranks": [0]})
    # Queued behind d1 when the connection drops: the hub drops it with the
    # connection, serve sends it again once reconnected, and it runs once.
    send({"op": "exec", "id": "q1", "code": "runs = globals().get('runs', 0) + 1\n"
          "print('queued ran', runs)\n", "ranks": [0]})
    seen, queued, killed, states, ends = [], [], [], [], {}
    while len(ends) < 2:
        m = recv()
        if m.get("op") == "output":
            (seen if m.get("id") == "d1" else queued).append(m["text"])
            if len(seen) == 5 and not killed:
                killed = kill_connections()
        if m.get("op") == "serve":
            states.append(m.get("state"))
        if m.get("id") in ("d1", "q1") and m.get("op") in ("done", "error"):
            ends[m["id"]] = m
    done = ends["d1"]
    check("drop: the connection's sshd was killed (%s)" % killed, bool(killed))
    check("drop: serve reconnected", states[:2] == ["reconnecting", "reconnected"], states)
    text = "".join(seen)
    want = "".join("line %d\n" % i for i in range(40))
    check("drop: every line arrived exactly once, in order", text == want, text)
    check("drop: the cell's done came", done.get("status") == "ok", done)
    check("drop: the queued request ran after the reconnection, once",
          ends["q1"].get("op") == "done" and ends["q1"].get("status") == "ok"
          and queued == ["queued ran 1\n"], (ends["q1"], queued))
    send({"op": "exec", "id": "d2", "code": "print('after', rank, globals().get('runs'))\n"})
    texts = sorted(m["text"] for m in until_done("d2") if m.get("op") == "output")
    check("drop: the next cell runs on the same serve, the queued one ran once",
          texts == ["after 0 1\n", "after 1 None\n"], texts)


{"values": values, "arrays": arrays, "bench": bench, "drop": drop}[mode]()
proc.stdin.close()
rc = proc.wait(timeout=30)
check("serve exits 0 at the end of its stdin", rc == 0, rc)
sys.exit(failed)
