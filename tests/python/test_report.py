"""`quiver report` rendered in headless Chromium (Debian's `chromium`): the
screenshot is not blank, every chart has data, and the DOM Chromium built
from the file refers to nothing outside it (no URL to fetch, no script).
Also the cron contract: exit 1 and no file when the day has no metrics."""

import os
import re
import shutil
import struct
import subprocess
import tempfile
import zlib

import pytest
from conftest import computed_day, quiver_binary, quiver_env

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def report():
    if CHROMIUM is None:
        pytest.skip("no chromium here (scripts/test.sh installs Debian's `chromium`)")
    binary = quiver_binary()
    work = tempfile.mkdtemp(prefix="quiver-report-")
    data = os.path.join(work, "data")
    env = quiver_env()
    day = computed_day(binary, data, env)
    out = os.path.join(work, "report.html")
    done = subprocess.run([binary, "--data-dir", data, "report", "--date", day, "--out", out],
                          capture_output=True, text=True, env=env, cwd=work)
    assert done.returncode == 0, done.stderr
    yield {"binary": binary, "work": work, "data": data, "day": day, "out": out, "env": env}
    shutil.rmtree(work, ignore_errors=True)


def chromium(*args):
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--no-first-run", "--disable-extensions", *args],
                          capture_output=True, text=True, timeout=120)


def png_pixels(path):
    """The RGB(A) rows of a PNG, unfiltered (enough of the format for
    Chromium's 8-bit screenshots)."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, kind = 8, b"", 0, 0, 0
    while pos < len(data):
        n, tag = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + n]
        if tag == b"IHDR":
            width, height, depth, kind = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8, depth
        elif tag == b"IDAT":
            idat += chunk
        pos += 12 + n
    bpp = {2: 3, 6: 4}[kind]
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, bpp, rows


def test_the_screenshot_is_not_blank_and_has_the_charts_colours(report):
    shot = os.path.join(report["work"], "shot.png")
    done = chromium(f"--screenshot={shot}", "--window-size=1400,1100", "file://" + report["out"])
    assert os.path.exists(shot), done.stderr[-2000:]
    width, height, bpp, rows = png_pixels(shot)
    colours = {}
    for row in rows:
        for x in range(0, width * bpp, bpp):
            px = row[x:x + 3]
            colours[px] = colours.get(px, 0) + 1
    total = sum(colours.values())
    white = colours.get(b"\xff\xff\xff", 0)
    assert white < 0.97 * total, f"the page is blank: {white}/{total} white"
    # The bars' green (on target) and the equity line's blue are drawn.
    def near(rgb):
        return sum(n for px, n in colours.items() if all(abs(px[i] - rgb[i]) < 30 for i in range(3)))
    assert near((44, 160, 44)) > 50, "no green bars on the screen"
    assert near((31, 119, 180)) > 10, "no blue equity line on the screen"


def test_every_chart_has_data_and_nothing_is_fetched(report):
    dom = chromium("--dump-dom", "file://" + report["out"]).stdout
    assert "<h1>Quiver daily report, " + report["day"] in dom, dom[:500]
    charts = re.findall(r'<figure class="chart" data-points="(\d+)">(.*?)</figure>', dom, re.S)
    titles = [re.search(r"<figcaption>(.*?) \(", body).group(1) for _, body in charts]
    assert titles == ["Equity curve", "Drawdown", "Win rate by mode", "Win rate by regime",
                      "Gate pass rates", "Good and bad blocks", "Latency per step", "Calibration"], titles
    for (points, body), title in zip(charts, titles):
        assert int(points) > 0, f"{title} has no data"
        assert "<svg" in body and "chart failed" not in body, title
        shapes = len(re.findall(r"<(?:rect|polyline|polygon|circle|path)\b", body))
        assert shapes > 3, f"{title}: {shapes} shapes"
    # Nothing outside the file: no script, no link, no src/href/url() to a URL.
    assert "<script" not in dom and "<link" not in dom and "<iframe" not in dom
    for attr in re.findall(r'(?:src|href|xlink:href)\s*=\s*"([^"]*)"', dom):
        assert not re.match(r"(?i)(https?:|//|ftp:|file:)", attr), attr
    assert not re.search(r"url\(\s*['\"]?(?:https?:|//)", dom)
    # The verified council summary and the day's alerts are in it.
    assert "Council (every number verified" in dom and "rests on" in dom
    assert "Alerts of the day" in dom


def test_a_day_without_metrics_exits_1_and_writes_nothing(report):
    out = os.path.join(report["work"], "empty.html")
    done = subprocess.run([report["binary"], "--data-dir", report["data"], "report", "--date", "2001-01-01",
                           "--out", out], capture_output=True, text=True, env=report["env"])
    assert done.returncode == 1, done
    assert "quiver metrics compute --date 2001-01-01" in done.stderr
    assert not os.path.exists(out) and not os.path.exists(out + ".tmp")
    done = subprocess.run([report["binary"], "--data-dir", report["data"], "report", "--date", "01/02/2026"],
                          capture_output=True, text=True, env=report["env"])
    assert done.returncode != 0 and "expected YYYY-MM-DD" in done.stderr
