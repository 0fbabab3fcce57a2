#!/usr/bin/env python3
"""Do two kernel template trees compile to the same code objects?

For refactors of templates/ that should not change the kernels: it warms the
same configs twice, into two empty caches (the embedded templates or a template
directory on each side, through SPARSEJIT_TEMPLATE_DIR), and compares the code
objects config by config. A cache entry starts with a header that names its key
(and the key hashes the rendered source), so only the ELF image that follows is
compared, section by section, with the source hash that NVRTC writes into internal
symbol names masked (code_image). Comments and blank lines leave the objects identical; any change to
the generated code shows, and then the kernels need a GPU A/B (docs/PERF.md).

  scripts/same-code.py [--sparsejit BIN] [--preset NAME | --manifest FILE]
                       [--arch LIST] [-j N] BASE NEW

BASE and NEW: a directory of templates, or `embedded` (the binary's copies).
Exit status: 0 identical, 1 some differ (listed), 2 the warm failed.
"""
import argparse
import glob
import json
import os
import re
import struct
import subprocess
import sys
import tempfile


def warm(binary, templates, cache, args):
    env = dict(os.environ, SPARSEJIT_CACHE_DIR=cache, SPARSEJIT_TEMPLATE_DIR="" if templates == "embedded" else templates)
    cmd = [binary, "warm", "-j", str(args.jobs)]
    cmd += ["--manifest", args.manifest] if args.manifest else ["--preset", args.preset, "--arch", args.arch]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if run.returncode != 0:
        sys.stderr.write(f"same-code: warm with {templates} failed ({run.returncode}):\n{run.stdout}{run.stderr}")
        sys.exit(2)


def code_objects(cache):
    """config_key -> (config, the code object's ELF image)."""
    out = {}
    for meta_path in glob.glob(os.path.join(cache, "v*", "*", "*.json")):
        with open(meta_path) as f:
            meta = json.load(f)
        with open(meta_path[: -len(".json")] + ".bin", "rb") as f:
            blob = f.read()
        start = blob.find(b"\x7fELF")
        out[meta["config_key"]] = (meta["config"], code_image(blob[start:] if start >= 0 else blob))
    return out


# What a code object runs: its executable sections, each with its relocations (by the
# target symbol's name, not its index), each kernel's own constant banks
# (.nv.constant<N>.<kernel>: its parameters' bank and the literals its code loads), and the
# sizes of its static shared and local memory. Symbol tables, string tables and the
# module's globals (.nv.global, .nv.global.init, .nv.constant4) are left out: NVRTC
# compiles with -default-device, so an unused namespace-scope constant becomes a device
# global (zero-valued ones in .nv.global, the others initialized) that shifts symbol
# indices without changing any instruction; code that uses a global shows it in its
# relocations. Internal names carry NVRTC's own hash of the source
# (_INTERNAL_<hash>_<n>_<program>_cu_<hash>), masked.
INTERNAL = re.compile(rb"_INTERNAL_[0-9a-f]+_[0-9]+_(\w+?)_cu_[0-9a-f]+")
SHT_SYMTAB, SHT_RELA, SHT_NOBITS, SHT_REL, SHF_EXECINSTR = 2, 4, 8, 9, 0x4


def code_image(elf):
    """The executable part of an ELF image (anything else but a 64-bit little-endian
    ELF image is compared whole)."""
    if len(elf) < 64 or elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        return elf
    shoff, = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
    heads = [struct.unpack_from("<IIQQQQIIQQ", elf, shoff + i * shentsize) for i in range(shnum)]

    def string(table, off):
        base = heads[table][4]
        return INTERNAL.sub(rb"_INTERNAL_\1", elf[base + off:elf.index(b"\0", base + off)])

    def symbol_names(symtab):
        _, _, _, _, off, size, strtab, _, _, _ = heads[symtab]
        return [string(strtab, struct.unpack_from("<I", elf, off + i)[0]) for i in range(0, size, 24)]

    relocs = {}  # section index -> its relocations: (offset, type, symbol name, addend)
    for _, kind, _, _, off, size, link, info, _, entsize in heads:
        if kind in (SHT_RELA, SHT_REL):
            names = symbol_names(link)
            step = entsize or (24 if kind == SHT_RELA else 16)
            rows = []
            for i in range(off, off + size, step):
                r_offset, r_info = struct.unpack_from("<QQ", elf, i)
                addend = struct.unpack_from("<q", elf, i + 16)[0] if kind == SHT_RELA else 0
                rows.append((r_offset, r_info & 0xFFFFFFFF, names[r_info >> 32], addend))
            relocs.setdefault(info, []).extend(rows)
    image = []
    for i, (name, kind, flags, _, off, size, _, _, _, _) in enumerate(heads):
        section = string(shstrndx, name)
        if flags & SHF_EXECINSTR:
            image.append((section, elf[off:off + size], relocs.get(i, [])))
        elif kind == SHT_NOBITS and section.startswith((b".nv.shared.", b".nv.local.")):
            image.append((section, size))
        elif kind != SHT_NOBITS and re.match(rb"\.nv\.constant[0-9]+\.", section):
            image.append((section, elf[off:off + size], relocs.get(i, [])))
    return image


def describe(config):
    keys = ("op", "arch", "q_dtype", "kv_dtype", "head_dim", "gqa_group", "num_topk_chunks", "launch")
    return json.dumps({k: config[k] for k in keys if k in config}, separators=(",", ":"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("base")
    ap.add_argument("new")
    ap.add_argument("--sparsejit", default=os.environ.get("SPARSEJIT_BIN", "build/sparsejit"))
    ap.add_argument("--preset", default="minimax-m3")
    ap.add_argument("--manifest", help="warm exactly these configs (JSON lines, as SPARSEJIT_RECORD writes them)")
    ap.add_argument("--arch", default="sm_90,sm_80")
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    for side in (args.base, args.new):
        if side != "embedded" and not os.path.isdir(side):
            ap.error(f"{side}: not a directory of templates (or `embedded`)")
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        warm(args.sparsejit, args.base, a, args)
        warm(args.sparsejit, args.new, b, args)
        base, new = code_objects(a), code_objects(b)
    if not base or set(base) != set(new):
        sys.stderr.write(f"same-code: the two warms built different config sets ({len(base)} vs {len(new)})\n")
        return 2
    differ = [k for k in base if base[k][1] != new[k][1]]
    for k in sorted(differ, key=lambda k: describe(base[k][0])):
        print(f"differs: {describe(base[k][0])}")
    print(f"{len(base) - len(differ)} of {len(base)} code objects identical")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
