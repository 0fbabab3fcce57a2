"""The benchmark's CPU-side tools on synthetic input (their GPU runs are in docs/PERF.md)."""
import pathlib
import random
import re
import subprocess
import sys

TIMELINE = pathlib.Path(__file__).resolve().parents[2] / "bench" / "timeline.py"


def _log(tmp_path, calls=6, ctas=16, slow_sms=(3, 11)):
    """SJ_TIMELINE lines of `calls` calls: SM s streams 20% slower when s is in slow_sms, in every call."""
    rng = random.Random(7)
    lines = ["some bench output", "SJ_TIMELINE sparsejit_decode 1 2"]  # noise and a cut line
    for c in range(calls):
        t0 = 1_000_000 + c * 330_000
        sms = list(range(ctas))
        rng.shuffle(sms)  # each call places the workgroups on other SMs
        for cta, sm in enumerate(sms):
            s = t0 + rng.randrange(0, 200)
            stream = 40_000 * (1.2 if sm in slow_sms else 1.0) + rng.randrange(0, 300)
            m = [s, s + 100, s + 800, s + 900, s + 1500, s + 1600, s + 5500, 0, 0, 0, 0]
            m[7] = m[6] + int(stream)
            m[8], m[9], m[10] = m[7] + 400, m[7] + 700, m[7] + 1500
            lines.append("SJ_TIMELINE sparsejit_decode %d 0 0 %d %s" % (cta, sm, " ".join(map(str, m))))
    p = tmp_path / "timeline.log"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_timeline_reports_steps_and_finds_the_slow_sms(tmp_path):
    out = subprocess.run([sys.executable, str(TIMELINE), str(_log(tmp_path))], capture_output=True, text=True, check=True).stdout
    assert "6 calls of 16 workgroups" in out
    assert re.search(r"2 position known\s+0\.800\n", out)
    assert re.search(r"6 first sub-tile in\s+5\.500\n", out)
    assert re.search(r"10 stored\s+4\d\.\d+\n", out)
    slowest = re.findall(r"(\d+) \((\d\.\d+)\)", out.split("slowest SMs:")[1])
    assert {int(sm) for sm, _ in slowest[-2:]} == {3, 11}  # the two slow SMs, at ~1.2x the median
    assert all(1.15 < float(r) < 1.25 for _, r in slowest[-2:])
    corr = float(out.split("correlate ")[1].split()[0])
    assert corr > 0.9  # placement, not data: the same SMs are slow in odd and even calls


def test_timeline_says_what_is_missing(tmp_path):
    p = tmp_path / "empty.log"
    p.write_text("no marks here\n")
    r = subprocess.run([sys.executable, str(TIMELINE), str(p)], capture_output=True, text=True)
    assert r.returncode != 0
    assert "-DSJ_TIMELINE" in r.stderr
