#!/usr/bin/env python3
"""Checks that a `workerd tune --report` page renders in a real browser.

    check_report.py REPORT.html OUTDIR

Opens the report in headless Chromium twice: once for its DOM (--dump-dom), where each chart's
<svg> (chart-rate, chart-latency, chart-memory) must be present with at least one data series (a
<path d> or <polyline points> with class "series" and non-empty data: the frame and the legend
are drawn even without data, so they do not count), and once for a screenshot
(OUTDIR/report.png), which must hold a meaningful number of coloured pixels. chart-memory may
be absent only when the page says no memory was measured. The page must also be
self-contained: no script, nothing fetched.

Exit codes: 0 the report renders; 1 a check failed (the message says which); 2 usage, or the
browser could not be run. Python 3 standard library only: the PNG is decoded here.
"""

import html.parser
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import zlib

CHARTS = ("chart-rate", "chart-latency", "chart-memory")
TIMEOUT_SECONDS = 60
MIN_COLOURED_PIXELS = 500


class CheckFailed(Exception):
    pass


class BrowserError(Exception):
    pass


# ---- the browser ------------------------------------------------------------------------------


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise BrowserError("no chromium on PATH (Debian: apt-get install chromium)")


def run_chromium(chromium, outdir, profile, args):
    """Runs headless Chromium with `args`, bounded by TIMEOUT_SECONDS; returns its stdout."""
    argv = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
            f"--user-data-dir={os.path.join(outdir, profile)}"] + args
    env = dict(os.environ, HOME=outdir)
    # A session of its own, so that on a timeout its whole group (renderer, GPU and zygote
    # processes) goes by the pid we started, and nothing else.
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise BrowserError(f"chromium did not finish within {TIMEOUT_SECONDS} s: {' '.join(argv)}")
    if proc.returncode != 0:
        tail = err.decode(errors="replace")[-2000:]
        raise BrowserError(f"chromium exited with {proc.returncode}: {' '.join(argv)}\n{tail}")
    return out.decode(errors="replace")


# ---- the DOM ----------------------------------------------------------------------------------


class ChartFinder(html.parser.HTMLParser):
    """For each <svg id=...>: how many series (<path d> / <polyline points> of class "series",
    with non-empty data) it holds."""

    def __init__(self):
        super().__init__()
        self.series = {}  # svg id -> count of non-empty paths and polylines
        self._svg = None
        self._depth = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "svg":
            if self._svg is None:
                self._svg = attrs.get("id", "")
                self.series.setdefault(self._svg, 0)
            self._depth += 1
        elif self._svg is not None:
            data = {"path": attrs.get("d"), "polyline": attrs.get("points")}.get(tag)
            series = "series" in (attrs.get("class") or "").split()
            if series and data and data.strip():
                self.series[self._svg] += 1

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag == "svg":
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag == "svg" and self._svg is not None:
            self._depth -= 1
            if self._depth == 0:
                self._svg = None


def check_dom(dom, page):
    finder = ChartFinder()
    finder.feed(dom)
    for chart in CHARTS:
        if chart not in finder.series:
            if chart == "chart-memory" and "no memory measured" in page.lower():
                continue
            raise CheckFailed(f"no <svg id=\"{chart}\"> in the rendered DOM")
        if finder.series[chart] == 0:
            raise CheckFailed(f"<svg id=\"{chart}\"> has no data series (a <path> or <polyline> of "
                              f"class \"series\" with data)")
    return finder.series


def check_self_contained(page):
    for pattern, what in ((r"<script", "a <script>"), (r"<link\b", "a <link>"),
                          (r"\bsrc\s*=", "a src= attribute"), (r"url\(", "a CSS url()"),
                          (r"@import", "a CSS @import")):
        if re.search(pattern, page, re.IGNORECASE):
            raise CheckFailed(f"the report is not self-contained: it has {what}")


# ---- the screenshot ---------------------------------------------------------------------------


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def decode_png(data):
    """Returns (width, height, channels, pixel bytes) of an 8-bit RGB or RGBA non-interlaced PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise CheckFailed("the screenshot is not a PNG")
    pos, idat, header = 8, [], None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if header is None:
        raise CheckFailed("the screenshot has no IHDR chunk")
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in (2, 6) or interlace != 0:
        raise CheckFailed(f"unsupported PNG: bit depth {depth}, colour type {colour}, "
                          f"interlace {interlace} (8-bit RGB/RGBA, not interlaced)")
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = width * channels
    if len(raw) != height * (stride + 1):
        raise CheckFailed("the screenshot's image data has the wrong length")
    pixels = bytearray(height * stride)
    prev = bytearray(stride)
    for y in range(height):
        filter_type = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if filter_type == 1:  # Sub
            for i in range(channels, stride):
                line[i] = (line[i] + line[i - channels]) & 0xFF
        elif filter_type == 2:  # Up
            for i in range(stride):
                line[i] = (line[i] + prev[i]) & 0xFF
        elif filter_type == 3:  # Average
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif filter_type == 4:  # Paeth
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                up_left = prev[i - channels] if i >= channels else 0
                line[i] = (line[i] + paeth(left, prev[i], up_left)) & 0xFF
        elif filter_type != 0:
            raise CheckFailed(f"the screenshot has an unknown PNG filter {filter_type}")
        pixels[y * stride:(y + 1) * stride] = line
        prev = line
    return width, height, channels, bytes(pixels)


def coloured_pixels(width, height, channels, pixels):
    """Pixels that are clearly a colour, not white, grey or black (anti-aliased text is grey)."""
    count = 0
    for i in range(0, width * height * channels, channels):
        r, g, b = pixels[i], pixels[i + 1], pixels[i + 2]
        high, low = max(r, g, b), min(r, g, b)
        if high >= 60 and (high - low) * 255 >= 100 * high:  # HSV saturation >= ~0.4
            count += 1
    return count


def check_screenshot(path):
    with open(path, "rb") as f:
        width, height, channels, pixels = decode_png(f.read())
    count = coloured_pixels(width, height, channels, pixels)
    if count <= MIN_COLOURED_PIXELS:
        raise CheckFailed(f"the screenshot {path} ({width}x{height}) has only {count} coloured "
                          f"pixels (want more than {MIN_COLOURED_PIXELS}): the charts did not draw")
    return width, height, count


# ---- the steps --------------------------------------------------------------------------------


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    report, outdir = os.path.abspath(argv[1]), os.path.abspath(argv[2])
    os.makedirs(outdir, exist_ok=True)
    try:
        with open(report, encoding="utf-8") as f:
            page = f.read()
        chromium = find_chromium()
        url = "file://" + report
        shot = os.path.join(outdir, "report.png")
        if os.path.exists(shot):
            os.remove(shot)
        dom = run_chromium(chromium, outdir, "profile-dom", ["--dump-dom", url])
        run_chromium(chromium, outdir, "profile-shot",
                     ["--window-size=1200,3000", f"--screenshot={shot}", url])
        if not os.path.exists(shot):
            raise BrowserError(f"chromium wrote no screenshot at {shot}")
    except (OSError, BrowserError) as e:
        print(f"check_report: {e}", file=sys.stderr)
        return 2
    try:
        check_self_contained(page)
        series = check_dom(dom, page)
        width, height, count = check_screenshot(shot)
    except CheckFailed as e:
        print(f"check_report: {report}: {e}", file=sys.stderr)
        return 1
    charts = ", ".join(f"{k}: {v} series" for k, v in series.items() if k in CHARTS)
    print(f"check_report: {report} renders: {charts}; {shot} {width}x{height}, "
          f"{count} coloured pixels")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
