"""The benchmark's CPU-side tools on synthetic input (their GPU runs are in docs/PERF.md)."""
import json
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


AB = pathlib.Path(__file__).resolve().parents[2] / "bench" / "ab.sh"
AB_SUMMARY = AB.with_name("ab_summary.py")

FAKE_BENCH = """#!/usr/bin/env python3
# Stands in for sparsejit_bench: writes what ab.sh passed it and a time that depends on the side.
import json, os, sys
a = sys.argv[1:]
out, filt = a[a.index("--out") + 1], a[a.index("--filter") + 1]
flags = os.environ.get("SPARSEJIT_EXTRA_FLAGS", "")
t = 50.0 if "-DFAST=1" in flags else 52.0
with open(out, "w") as f:
    f.write(json.dumps({"kind": "copy", "GBps_read_plus_write": 3000.0}) + "\\n")
    for name in filt.split(","):
        f.write(json.dumps({"kind": "decode", "name": "decode_" + name, "ours_graph_us": t, "kv_bytes": 134217728,
                            "args": a, "flags": flags, "cfg": os.environ.get("SPARSEJIT_CONFIG_DIR", "")}) + "\\n")
    f.write(json.dumps({"kind": "prefill", "name": "prefill_x", "ours_us": 3500.0}) + "\\n")
"""


def test_ab_runs_every_side_and_summarizes(tmp_path):
    fake = tmp_path / "fake_bench"
    fake.write_text(FAKE_BENCH)
    fake.chmod(0o755)
    out = tmp_path / "ab"
    env = {"PATH": "/usr/bin:/bin", "BENCH_ARGS": "--kv-fp8"}
    subprocess.run(["bash", str(AB), str(out), "B32,B128", "2", f"base:{fake}", f"fast:{fake}:-DFAST=1~-DX=2:/cfg"],
                   env=env, check=True)
    rows = [json.loads(l) for l in (out / "fast_2.jsonl").read_text().splitlines()]
    dec = [r for r in rows if r["kind"] == "decode"]
    assert [r["name"] for r in dec] == ["decode_B32", "decode_B128"]
    assert dec[0]["flags"] == "-DFAST=1 -DX=2" and dec[0]["cfg"] == "/cfg"  # '~' is a space
    assert "--quick" in dec[0]["args"] and "--kv-fp8" in dec[0]["args"]
    assert sorted(p.name for p in out.glob("*.jsonl")) == ["base_1.jsonl", "base_2.jsonl", "fast_1.jsonl", "fast_2.jsonl"]
    table = subprocess.run([sys.executable, str(AB_SUMMARY), str(out), "base,fast"], capture_output=True, text=True,
                           check=True).stdout
    assert "3000.0 GB/s" in table
    # 128 MiB in 50 us is 2684 GB/s: 89.5% of 3000
    assert re.search(r"\| decode_B32 \| 52\.00 \(86\.0%\) \| 50\.00 \(89\.5%\) \| -3\.85% \| 52\.00,52\.00 / 50\.00,50\.00 \|", table)
    assert re.search(r"\| prefill_x \| 3500\.00 \| 3500\.00 \| \+0\.00% \|", table)


def test_ab_summary_counts_fp8_bytes_and_shows_errors(tmp_path):
    # fp8 K/V: the bench's kv_bytes count bf16, the kernel reads half; a side whose case failed shows why.
    rows = {"a_1.jsonl": [{"kind": "copy", "GBps_read_plus_write": 3000.0},
                          {"kind": "decode", "name": "decode_f8", "ours_graph_us": 25.0, "kv_bytes": 134217728, "kv_dtype": "fp8_e4m3fn"}],
            "b_1.jsonl": [{"kind": "decode", "name": "decode_f8", "kv_bytes": 134217728, "kv_dtype": "fp8_e4m3fn",
                           "error": "resource: cannot read x"}]}
    for name, lines in rows.items():
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in lines))
    table = subprocess.run([sys.executable, str(AB_SUMMARY), str(tmp_path), "a,b"], capture_output=True, text=True,
                           check=True).stdout
    # 64 MiB in 25 us is 2684 GB/s: 89.5% of 3000
    assert re.search(r"\| decode_f8 \| 25\.00 \(89\.5%\) \| error: resource: cannot read x \| - \|", table), table


def test_ab_refuses_a_bad_side(tmp_path):
    r = subprocess.run(["bash", str(AB), str(tmp_path / "ab"), "B32", "1", "nobinary:/does/not/exist"], capture_output=True, text=True)
    assert r.returncode == 2 and "bad side" in r.stderr
    r = subprocess.run([sys.executable, str(AB_SUMMARY), str(tmp_path), "nothing"], capture_output=True, text=True)
    assert r.returncode != 0 and "no nothing_*.jsonl" in r.stderr


PLOT = TIMELINE.parent / "plot.py"


def test_plot_tables_fp8_runs_by_the_bytes_read(tmp_path):
    # run.sh's fp8 pass: --suffix names its files, the tables say fp8 and count the bytes read (kv_read_bytes).
    common = {"tp": "tp1", "H": 64, "KVH": 4, "model": "corr", "kv_dtype": "fp8_e4m3fn", "scale_mode": "scalar"}
    ours = [{"kind": "info", "device": "H100"}, {"kind": "copy", "GBps_read_plus_write": 3000.0, "ms": 0.7},
            dict(common, kind="decode", name="decode_a", batch=32, seq_label="8192", R=4, kv_bytes=134217728,
                 kv_read_bytes=67108864, ours_us=25.0, ours_graph_us=25.0, num_chunks=1),
            dict(common, kind="prefill", name="prefill_b", seq_label="4096", total_q=4096, sel_mean=15.9, union4=21.0,
                 kv_bytes=1e9, kv_read_bytes=5e8, ours_us=1500.0)]
    tri = [{"kind": "copy", "name": "torch_copy_1GiB", "GBps_read_plus_write": 2990.0},
           {"name": "decode_a", "triton_us": 30.0, "triton_graph_us": 30.0, "triton_chunks": 2, "err_ours": 0.002, "err_triton": 0.003},
           {"name": "prefill_b", "triton_us": 4500.0, "err_ours": 0.004, "err_triton": 0.005}]
    (tmp_path / "ours_fp8.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ours))
    (tmp_path / "triton_fp8.jsonl").write_text("".join(json.dumps(r) + "\n" for r in tri))
    subprocess.run([sys.executable, str(PLOT), "--ours", str(tmp_path / "ours_fp8.jsonl"), "--triton", str(tmp_path / "triton_fp8.jsonl"),
                    "--outdir", str(tmp_path), "--suffix", "_fp8"], capture_output=True, text=True, check=True)
    assert not (tmp_path / "results.md").exists()
    try:
        import matplotlib  # noqa: F401  (where it is installed, the pictures are drawn, a panel without runs left empty)
        assert (tmp_path / "decode_bw_tp1_fp8.png").stat().st_size > 0 and (tmp_path / "prefill_tp1_fp8.png").stat().st_size > 0
    except ImportError:
        pass
    md = (tmp_path / "results_fp8.md").read_text()
    assert "### Decode (fp8_e4m3fn K/V, scalar scales," in md and "### Prefill (fp8_e4m3fn K/V, scalar scales," in md
    # 64 MiB read in 25 us: 2684 GB/s, 89.5% of 3000; Triton 30 us: 2237 GB/s, 74.6%
    assert re.search(r"\| tp1 \(64,4\) \| corr \| 32 \| 8192 \| 64\.0 \| 4 \| 1 / 2 \| 25\.00 \| — \| 30\.00 \| — \| 1\.20 \| 2684 \| 89\.5 \| 2237 \| 74\.6 \| "
                     r"0\.00200 \| 0\.00300 \|", md), md
    assert re.search(r"\| tp1 \(64,4\) \| corr \| 4096 \| 4096 \| 15\.90 \| 21\.00 \| 1\.500 \| 4\.500 \| 3\.00 \| 0\.00400 \| 0\.00500 \|", md), md
