"""`quiver council` against a local HTTP server speaking the OpenAI
chat-completions protocol, scripted per model: an honest analyst that quotes
packet values, an analyst that invents numbers, one that answers malformed
JSON, one that fails twice (500, 429) and then answers, one that hangs past
the request timeout, and a judge that slips in a number of its own. The
verifier must drop every invented number with its reason, the retries must
stop at attempts_max, and the key must be sent but never printed."""

import datetime as dt
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

import pytest
from conftest import computed_day, quiver_binary, quiver_env

KEY = "sk-test-council-secret"


class ChatServer:
    """Answers /v1/chat/completions by the request's `model`; records every
    request (model, headers, body)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []
        self.calls = {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                model = body.get("model")
                with server.lock:
                    server.requests.append({"model": model, "body": body,
                                            "headers": {k.lower(): v for k, v in self.headers.items()}})
                    n = server.calls[model] = server.calls.get(model, 0) + 1
                code, content = server.answer(model, n, body)
                if code == "hang":
                    time.sleep(3)
                    code, content = 200, json.dumps({"claims": []})
                if code == 200:
                    payload = {"id": "x", "object": "chat.completion", "model": model,
                               "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": content}}],
                               "usage": {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100}}
                else:
                    payload = {"error": {"message": content}}
                data = json.dumps(payload).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @staticmethod
    def packet_of(body):
        user = body["messages"][-1]["content"]
        data = json.loads(user)
        return data.get("packet", data)

    def answer(self, model, n, body):
        if model == "judge-model":
            claims = json.loads(body["messages"][-1]["content"])["verified_claims"]
            first = claims[0]
            ref = {"metric": first["metric"], "dimensions": first.get("dimensions", {})}
            summary = [
                {"text": first["text"], "rests_on": [ref]},
                {"text": "Overall the bot earned 4,321.5 bps today.", "rests_on": [ref]},
                {"text": "Model drift is fine.", "rests_on": [{"metric": "no_such_metric"}]},
            ]
            return 200, json.dumps({"summary": summary})
        packet = self.packet_of(body)
        rates = [m for m in packet["metrics"] if m["metric"] == "win_rate" and m.get("value") is not None]
        counts = [m for m in packet["metrics"] if m["metric"] == "trades_closed" and m.get("value") is not None]
        w = rates[0]
        honest = {"text": f"The {w['dimensions']['mode']} win rate was {w['value'] * 100:.1f}%.",
                  "value": w["value"], "unit": "ratio", "metric": "win_rate", "dimensions": w["dimensions"]}
        if model == "honest-model":
            return 200, json.dumps({"claims": [honest]})
        if model == "inventor-model":
            c = counts[0]["value"]
            day_before = (dt.date.fromisoformat(packet["date"]) - dt.timedelta(days=1)).isoformat()
            return 200, json.dumps({"claims": [
                honest,
                dict(honest, text="The win rate was 987.65%, a record."),
                dict(honest, text=f"The win rate was {w['value'] * 100:.1f}% on {int(c):,} trades."),
                dict(honest, text=f"On {day_before} the win rate was {w['value'] * 100:.1f}%."),
                dict(honest, text="The win rate held.", value=w["value"] + 0.2),
                dict(honest, metric="sharpe_ratio_made_up", text="Sharpe was 3.1."),
            ]})
        if model == "garbage-model":
            return 200, '{"claims": [ {"text": "half an answer'
        if model == "flaky-model":
            if n == 1:
                return 500, "overloaded"
            if n == 2:
                return 429, "rate limited"
            return 200, "```json\n" + json.dumps({"claims": [honest]}) + "\n```"
        if model == "slow-model":
            return "hang", None
        return 404, f"no model {model}"

    def close(self):
        self.httpd.shutdown()


@pytest.fixture(scope="module")
def council():
    binary = quiver_binary()
    work = tempfile.mkdtemp(prefix="quiver-council-")
    data = os.path.join(work, "data")
    env = quiver_env()
    day = computed_day(binary, data, env)
    chat = ChatServer()
    yield {"binary": binary, "work": work, "data": data, "day": day, "chat": chat}
    chat.close()
    shutil.rmtree(work, ignore_errors=True)


def run_council(c, config_text, *extra):
    config = os.path.join(c["work"], "council.toml")
    with open(config, "w") as f:
        f.write(config_text)
    env = dict(quiver_env(), TEST_COUNCIL_KEY=KEY)
    done = subprocess.run([c["binary"], "--config", config, "--data-dir", c["data"], "council",
                           "--date", c["day"], *extra],
                          capture_output=True, text=True, env=env, timeout=300)
    assert KEY not in done.stdout and KEY not in done.stderr, "the API key was printed"
    return done


def analyst(name, model, url, key=False):
    line = f'[[council.analysts]]\nname = "{name}"\nbase_url = "{url}"\nmodel = "{model}"\n'
    if key:
        line += 'api_key_env = "TEST_COUNCIL_KEY"\n'
    return line


def test_the_verifier_drops_every_invented_number_and_retries_are_bounded(council):
    chat = council["chat"]
    url = chat.url
    config = ('[council]\nrequest_timeout = "1s"\nattempts_max = 3\nbackoff_max = "100ms"\n'
              + analyst("honest", "honest-model", url, key=True)
              + analyst("inventor", "inventor-model", url)
              + analyst("garbage", "garbage-model", url)
              + analyst("flaky", "flaky-model", url)
              + analyst("slow", "slow-model", url)
              + f'[council.judge]\nbase_url = "{url}"\nmodel = "judge-model"\n')
    started = time.monotonic()
    done = run_council(council, config, "--json")
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    by_name = {a["name"]: a for a in run["analysts"]}

    # The honest and the flaky analysts' claims stand; flaky took 3 attempts.
    verified = run["verified"]
    assert {c["analyst"] for c in verified} == {"honest", "inventor", "flaky"}, verified
    assert by_name["flaky"]["error"] is None and by_name["flaky"]["claims"] == 1
    assert chat.calls["flaky-model"] == 3

    # Every invention of the inventor is dropped, each with its reason.
    reasons = [d["reason"] for d in run["dropped"] if d["claim"]["analyst"] == "inventor"]
    assert len(reasons) == 5, run["dropped"]
    assert any(r.startswith("invented:") for r in reasons), reasons
    assert any(r.startswith("wrong metric:") for r in reasons), reasons
    assert any(r.startswith("wrong day:") for r in reasons), reasons
    assert any(r.startswith("its value") for r in reasons), reasons
    assert any("does not have" in r for r in reasons), reasons
    # ... and its one honest claim stands.
    assert len([c for c in verified if c["analyst"] == "inventor"]) == 1

    # Malformed JSON and a hang: retried up to attempts_max, then given up.
    assert by_name["garbage"]["claims"] == 0 and "not the JSON asked for" in by_name["garbage"]["error"]
    assert chat.calls["garbage-model"] == 3
    assert by_name["slow"]["claims"] == 0 and "attempt 3" in by_name["slow"]["error"]
    assert chat.calls["slow-model"] == 3
    # Analysts run in parallel: three 1 s timeouts, not one per analyst after another.
    assert elapsed < 30, elapsed

    # The judge: its number of its own and its unbacked sentence are dropped.
    assert run["judge"] == "judge-model"
    assert len(run["summary"]) == 1, run["summary"]
    judged = {d["reason"].split(":")[0] for d in run["dropped_sentences"]}
    assert judged == {"invented", "rests on no_such_metric, which no verified claim cites"}, run["dropped_sentences"]
    assert "4,321.5 bps" not in run["markdown"].split("## Dropped")[0]

    # The key went to the analyst that has one, as a bearer token, and the
    # requests asked for temperature 0 and a JSON schema.
    honest = [r for r in chat.requests if r["model"] == "honest-model"]
    assert honest and honest[0]["headers"]["authorization"] == f"Bearer {KEY}"
    assert all("authorization" not in r["headers"] for r in chat.requests if r["model"] != "honest-model")
    assert all(r["body"]["temperature"] == 0 for r in chat.requests)
    assert all(r["body"]["response_format"]["type"] == "json_schema" for r in chat.requests)
    # The analysts saw the packet, never raw events.
    assert all(set(ChatServer.packet_of(r["body"])) == {"date", "metrics", "insights", "alerts"}
               for r in chat.requests if r["model"] != "judge-model")

    # The tally: every request's tokens counted (1,000 + 100 per answered request).
    tally = run["tally"]
    # honest 1, inventor 1, garbage 3, flaky 3, slow 3, judge 1.
    assert tally["requests"] == 6 and tally["attempts"] == 12, tally
    assert tally["prompt_tokens"] > 0 and tally["completion_tokens"] > 0


def test_the_markdown_names_the_metrics_and_the_dropped_reasons(council):
    url = council["chat"].url
    config = ('[council]\n' + analyst("inventor", "inventor-model", url)
              + 'metrics = ["win_rate", "trades_closed"]\n')
    done = run_council(council, config)
    assert done.returncode == 0, done.stderr
    md = done.stdout
    assert md.startswith(f"# Council summary for {council['day']}")
    summary = md.split("## Dropped")[0]
    for line in summary.splitlines():
        if line.startswith("- "):
            assert "_(rests on `win_rate{mode=" in line, line
    assert "## Dropped by the number verifier" in md and "invented:" in md
    assert "- judge: built-in" in md
    # `metrics` narrows what the analyst is sent.
    sent = ChatServer.packet_of([r for r in council["chat"].requests if r["model"] == "inventor-model"][-1]["body"])
    assert {m["metric"] for m in sent["metrics"]} == {"win_rate", "trades_closed"}, sent
    assert sent["insights"] == []


def test_a_missing_key_and_a_bad_config_are_clear(council):
    url = council["chat"].url
    config = '[council]\n' + analyst("keyed", "honest-model", url) + 'api_key_env = "NO_SUCH_COUNCIL_KEY"\n'
    done = run_council(council, config, "--json")
    assert done.returncode == 0, done.stderr
    keyed = json.loads(done.stdout)["analysts"][0]
    assert keyed["claims"] == 0 and "NO_SUCH_COUNCIL_KEY is unset" in keyed["error"]
    for bad, says in [
        ('[council]\n' + "".join(analyst(f"a{i}", "m", url) for i in range(8)), "at most 7"),
        ('[council]\n' + analyst("x", "m", "ftp://host"), "not an http(s) URL"),
        ('[council]\n' + analyst("x", "m", url) + analyst("x", "m", url), "two analysts"),
        ('[council]\nattempts_max = 0\n', "attempts_max"),
    ]:
        done = run_council(council, bad)
        assert done.returncode != 0 and says in done.stderr, (bad, done.stderr)
