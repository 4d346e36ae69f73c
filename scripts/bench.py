#!/usr/bin/env python3
"""Side-by-side benchmark of ownfs and its peers; run through scripts/bench.sh.

Every workload runs on every configuration in one run, interleaved: the order of the
configurations rotates with each repetition so a slow phase of the (shared) machine
does not land on one of them. Reports medians, speed relative to native (higher is
better, 1.00 = native) and ownfs (root) relative to the best peer.
"""

import argparse
import collections
import csv
import io
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OWNFS = REPO / "target/release/ownfs"
EXAMPLES = REPO / "target/release/examples"
PEERS_DIR = REPO / "target/bench-peers"
RUN_AS = "4200:4200"

def base_bin():
    b = os.environ.get("OWNFS_BASE_BIN")
    if not b:
        sys.exit("bench: the *-base configurations need OWNFS_BASE_BIN=path/to/ownfs")
    return b


# name -> (label, is_peer)
CONFIGS = {
    "native": ("native", False),
    "ownfs": ("ownfs root (passthrough)", False),
    "ownfs-served": ("ownfs root --no-passthrough", False),
    "ownfs-rootless": ("ownfs rootless (--run-as)", False),
    # The host decides every access: zero entry/attribute timeouts.
    "ownfs-ndp": ("ownfs root --no-default-permissions", False),
    "ownfs-pipe": ("ownfs pipe (unix socket)", False),
    # FUSE over io_uring (the bench turns enable_uring on; the other ownfs mounts say off).
    "ownfs-uring": ("ownfs root --io-uring on", False),
    "ownfs-served-uring": ("ownfs root --no-passthrough --io-uring on", False),
    # Every inode keeps its fd (no fd cache): what the cache costs when nothing is evicted.
    "ownfs-pinned": ("ownfs root --max-open-fds 0", False),
    "ownfs-rootless-pinned": ("ownfs rootless --max-open-fds 0", False),
    # Another build of ownfs (OWNFS_BASE_BIN), default options: before/after a change.
    "ownfs-base": ("ownfs root, OWNFS_BASE_BIN", False),
    "ownfs-rootless-base": ("ownfs rootless, OWNFS_BASE_BIN", False),
    "ownfs-pipe-base": ("ownfs pipe, OWNFS_BASE_BIN", False),
    # The same servers without the sandbox and seccomp: what confinement costs.
    "ownfs-unconfined": ("ownfs root, --sandbox none --seccomp none", False),
    "ownfs-pipe-unconfined": ("ownfs pipe, --sandbox none --seccomp none", False),
    "libfuse-ll": ("libfuse3 passthrough_ll", True),
    "crate-pfs": ("fuse-backend-rs PassthroughFs", True),
}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def mounted(path):
    with open("/proc/mounts") as f:
        return any(line.split()[1] == str(path) for line in f)


def wait_mounted(path, proc, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        if mounted(path):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server for {path} exited with {proc.returncode}")
        time.sleep(0.05)
    raise RuntimeError(f"{path} not mounted after {timeout}s")


class Config:
    def __init__(self, name, base, logdir):
        self.name = name
        self.dir = base / name
        self.src = self.dir / "src"
        self.mnt = self.dir / "mnt"
        self.procs = []
        self.logdir = logdir

    @property
    def root(self):
        return self.src if self.name == "native" else self.mnt

    def spawn(self, args):
        out = open(self.logdir / f"{self.name}.log", "ab")
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        p = subprocess.Popen(args, stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=env)
        self.procs.append(p)
        return p

    def start(self):
        self.src.mkdir(parents=True)
        self.mnt.mkdir(parents=True)
        os.chmod(self.dir, 0o755)
        os.chmod(self.src, 0o755)
        n = self.name
        if n == "native":
            return
        unconfined = ["--sandbox", "none", "--seccomp", "none"]
        mount = [OWNFS, "mount", self.src, self.mnt]
        # enable_uring is on for the whole run when an io_uring config is measured.
        classic = [*mount, "--io-uring", "off"]
        if n == "ownfs":
            p = self.spawn(classic)
        elif n == "ownfs-uring":
            p = self.spawn([*mount, "--io-uring", "on"])
        elif n == "ownfs-served-uring":
            p = self.spawn([*mount, "--no-passthrough", "--io-uring", "on"])
        elif n == "ownfs-unconfined":
            p = self.spawn([*classic, *unconfined])
        elif n == "ownfs-served":
            p = self.spawn([*classic, "--no-passthrough"])
        elif n == "ownfs-ndp":
            p = self.spawn([*classic, "--no-default-permissions"])
        elif n == "ownfs-pinned":
            p = self.spawn([*classic, "--max-open-fds", "0"])
        elif n == "ownfs-base":
            p = self.spawn([base_bin(), "mount", self.src, self.mnt])
        elif n in ("ownfs-rootless", "ownfs-rootless-pinned", "ownfs-rootless-base"):
            uid, gid = (int(x) for x in RUN_AS.split(":"))
            os.chown(self.src, uid, gid)
            binary = base_bin() if n == "ownfs-rootless-base" else OWNFS
            extra = ["--max-open-fds", "0"] if n == "ownfs-rootless-pinned" else []
            if n != "ownfs-rootless-base":
                extra += ["--io-uring", "off"]
            p = self.spawn([binary, "mount", self.src, self.mnt, "--run-as", RUN_AS, *extra])
        elif n in ("ownfs-pipe", "ownfs-pipe-unconfined", "ownfs-pipe-base"):
            sock = self.dir / "pipe.sock"
            extra = unconfined if n == "ownfs-pipe-unconfined" else []
            binary = base_bin() if n == "ownfs-pipe-base" else OWNFS
            self.spawn([binary, "serve", self.src, "--listen", f"unix:{sock}", *extra])
            for _ in range(200):
                if sock.exists():
                    break
                time.sleep(0.05)
            p = self.spawn([binary, "client", self.mnt, "--connect", f"unix:{sock}"])
        elif n == "libfuse-ll":
            p = self.spawn([PEERS_DIR / "passthrough_ll", "-f", "-o",
                            f"source={self.src},allow_other", self.mnt])
        elif n == "crate-pfs":
            p = self.spawn([EXAMPLES / "crate_passthrough", self.src, self.mnt])
        else:
            raise ValueError(n)
        wait_mounted(self.mnt, p)

    def cpu_seconds(self):
        """User+system CPU of this configuration's server processes (all threads, so far)."""
        total = 0
        for p in self.procs:
            try:
                fields = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self):
        if mounted(self.mnt):
            if subprocess.run(["umount", self.mnt], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", self.mnt], capture_output=True)
        for p in reversed(self.procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def timed(cmd, **kw):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)
    return time.perf_counter() - t


def fio(path, rw, size_mib, direct, runtime=None, bs="1M"):
    args = ["fio", "--name=b", f"--filename={path}", f"--rw={rw}", f"--bs={bs}",
            f"--size={size_mib}M", "--ioengine=psync", f"--direct={1 if direct else 0}",
            "--output-format=terse", "--terse-version=3", "--group_reporting",
            # Buffered reads come from a warm host page cache in every configuration.
            "--invalidate=0"]
    if rw == "write":
        args.append("--end_fsync=1")
    if runtime:
        args += ["--time_based", f"--runtime={runtime}"]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    f = out.strip().splitlines()[-1].split(";")
    # terse v3: read bw KiB/s at field 6, read iops 7; write bw 47, write iops 48.
    if rw in ("read", "randread"):
        return float(f[6]) / 1024, float(f[7])
    return float(f[47]) / 1024, float(f[48])


def make_tree_tar(path, files):
    """A tar of `files` regular files of mixed sizes in nested directories."""
    rng = random.Random(42)
    blob = bytes(rng.getrandbits(8) for _ in range(1 << 18))
    with tarfile.open(path, "w") as tar:
        for i in range(files):
            r = rng.random()
            size = rng.randint(0, 4096) if r < 0.7 else (
                rng.randint(4096, 65536) if r < 0.95 else rng.randint(65536, 1 << 18))
            info = tarfile.TarInfo(f"t/d{i % 50:02}/e{(i // 50) % 20:02}/f{i:06}")
            info.size = size
            info.mode = 0o644
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(blob[:size]))


def prepare_statdir(root, n):
    d = root / "stat10k"
    if not d.exists():
        d.mkdir()
        for i in range(n):
            (d / f"s{i:06}").write_bytes(b"x" * (i % 100))
    return d


URING_PARAM = Path("/sys/module/fuse/parameters/enable_uring")


def set_uring(on):
    """Sets the kernel's enable_uring; returns the previous value (None: no such knob)."""
    if not URING_PARAM.exists():
        if on:
            sys.exit("bench: this kernel has no FUSE over io_uring (enable_uring)")
        return None
    was = URING_PARAM.read_text().strip() == "Y"
    if on is not None and on != was:
        URING_PARAM.write_text("1" if on else "0")
    return was


def load1():
    """The 1-minute load average."""
    return float(Path("/proc/loadavg").read_text().split()[0])


BUSY_LOAD = 1.5


def report(rows, configs, out, reps, scale, notes=()):
    """Writes table.md and speed.png from result rows; prints the table."""
    s = scale
    workloads = []
    for (wname, scale_desc, unit, _, _, _) in rows:
        if all(w[0] != wname for w in workloads):
            workloads.append((wname, scale_desc, unit, unit != "s", None))
    configs = [c for c in configs if any(r[3] == c for r in rows)]
    # Medians and speed relative to native (higher is better, native = 1.00).
    med = {}
    for (wname, _, unit, n, _, v) in rows:
        med.setdefault((wname, n), []).append(v)
    med = {k: statistics.median(v) for k, v in med.items()}
    peers = [n for n in configs if CONFIGS[n][1]]
    lines = []
    head = ["workload", "unit"] + [CONFIGS[n][0] for n in configs]
    if "ownfs" in configs and "native" in configs:
        head += ["ownfs / native", "ownfs / best peer"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    speed_rows = []
    for (wname, scale_desc, unit, higher, _) in workloads:
        def speed(n):
            v = med.get((wname, n))
            nat = med.get((wname, "native"))
            if v is None or nat is None or v == 0:
                return None
            return v / nat if higher else nat / v
        cells = [f"{wname} ({scale_desc})", unit]
        for n in configs:
            v = med.get((wname, n))
            cells.append("failed" if v is None else (f"{v:.3f}" if unit == "s" else f"{v:.0f}"))
        if "ownfs" in configs and "native" in configs:
            so = speed("ownfs")
            cells.append(f"{so:.2f}" if so else "")
            ps = [speed(p) for p in peers if speed(p)]
            cells.append(f"{so / max(ps):.2f}" if so and ps else "")
        lines.append("| " + " | ".join(cells) + " |")
        speed_rows.append((wname, [speed(n) or 0 for n in configs]))
    table = "\n".join(list(notes) + lines)
    (out / "table.md").write_text(table + "\n")
    print(table)

    # Chart: speed relative to native per workload, one bar per configuration.
    dat = out / "speed.dat"
    with open(dat, "w") as f:
        f.write("workload " + " ".join(f'"{CONFIGS[n][0]}"' for n in configs) + "\n")
        for (wname, sp) in speed_rows:
            f.write(f'"{wname}" ' + " ".join(f"{x:.4f}" for x in sp) + "\n")
    gp = f"""
    set terminal png size 1600,800 font ",10" noenhanced
    set output '{out / "speed.png"}'
    set title "Speed relative to native (1.0 = native, higher is better; median of {reps} runs, scale {s})"
    set style data histograms
    set style histogram clustered gap 1
    set style fill solid border -1
    set boxwidth 0.9
    set xtics rotate by -30 scale 0

    set logscale y 10
    set yrange [0.05:30]
    set grid ytics
    set key outside right top
    plot for [i=2:{len(configs) + 1}] '{dat}' using i:xtic(1) title columnheader(i)
    """
    subprocess.run(["gnuplot"], input=gp, text=True, check=True)


def cpu_report(cpu, configs, workloads, out):
    """Appends the servers' median CPU seconds per workload run to table.md."""
    servers = [n for n in configs if n != "native"]
    lines = ["", "Server CPU (user+system seconds of the server processes, median per run; "
             "the pipe counts server and client):", "",
             "| workload | " + " | ".join(CONFIGS[n][0] for n in servers) + " |",
             "|" + "---|" * (len(servers) + 1)]
    for (wname, scale_desc, *_rest) in workloads:
        cells = [f"{wname} ({scale_desc})"]
        for n in servers:
            v = cpu.get((wname, n))
            cells.append(f"{statistics.median(v):.2f}" if v else "")
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    with open(out / "table.md", "a") as f:
        f.write(text + "\n")
    print(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiplies file counts and data sizes (0.1 for a quick run)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--workloads", default="")
    ap.add_argument("--out", default=str(REPO / "target/bench"))
    ap.add_argument("--backing", choices=["tmpfs", "disk"], default="tmpfs",
                    help="tmpfs (default: the disk drops out, FUSE alone is measured) or "
                         "disk (the backing directories under --base)")
    ap.add_argument("--base", default="/var/tmp",
                    help="with --backing disk: where the backing directories live")
    ap.add_argument("--quiet-check", action="store_true",
                    help=f"refuse to run when the 1-minute load is above {BUSY_LOAD} "
                         "(without it the table carries a warning)")
    ap.add_argument("--report", metavar="CSV",
                    help="only render table.md and speed.png from an earlier results.csv")
    a = ap.parse_args()
    if a.report:
        with open(a.report) as f:
            rows = [(r["workload"], r["scale"], r["unit"], r["config"], int(r["rep"]),
                     float(r["value"])) for r in csv.DictReader(f)]
        configs = [c for c in a.configs.split(",") if c]
        report(rows, configs, Path(a.out), len({r[4] for r in rows}), a.scale)
        return

    s = a.scale
    nfiles = max(100, int(10000 * s))
    ntar = max(200, int(20000 * s))
    size = max(64, int(1024 * s))
    configs = [c for c in a.configs.split(",") if c]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    load_before = load1()
    if load_before > BUSY_LOAD and a.quiet_check:
        sys.exit(f"bench: the machine is busy (1-minute load {load_before} > {BUSY_LOAD}); "
                 "stop what runs beside it and retry")
    tmpfs = None
    if a.backing == "tmpfs":
        tmpfs = Path(tempfile.mkdtemp(prefix="ownfs-bench-tmpfs-"))
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16g,mode=755", "tmpfs", tmpfs],
                       check=True)
        base = tmpfs / "b"
    else:
        base = Path(a.base) / f"ownfs-bench-{os.getpid()}"
    base.mkdir()
    os.chmod(base, 0o755)
    tarball = base / "tree.tar"
    log(f"generating a {ntar}-file tree archive")
    make_tree_tar(tarball, ntar)

    # (name, unit, higher_is_better, function(root, tag) -> value)
    def meta_flat(root, tag):
        o = subprocess.run([EXAMPLES / "metastorm", root, str(nfiles)], check=True,
                           capture_output=True, text=True).stdout
        return float(o.split()[0])

    def meta_tree(root, tag):
        o = subprocess.run([EXAMPLES / "metastorm", root, str(nfiles), "100"], check=True,
                           capture_output=True, text=True).stdout
        return float(o.split()[0])

    def stat_storm(root, tag):
        d = prepare_statdir(root, nfiles)
        o = subprocess.run([EXAMPLES / "statstorm", d, "10"], check=True,
                           capture_output=True, text=True).stdout
        return float(o.split()[0])

    def readdir(root, tag):
        d = prepare_statdir(root, nfiles)
        t = time.perf_counter()
        for _ in range(10):
            subprocess.run(["ls", "-U1", d], check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - t

    def untar(root, tag):
        d = root / f"untar-{tag}"
        d.mkdir()
        v = timed(["tar", "-xf", tarball, "-C", d])
        state[root] = d
        return v

    def du(root, tag):
        d = state.pop(root)
        v = timed(["du", "-s", d])
        shutil.rmtree(d)
        return v

    def seq_write(direct):
        def run(root, tag):
            bw, _ = fio(root / "fio.dat", "write", size, direct)
            return bw
        return run

    def warm(path):
        with open(path, "rb") as f:
            while f.read(1 << 20):
                pass

    def seq_read(direct):
        def run(root, tag):
            if not direct:
                warm(root / "fio.dat")
            bw, _ = fio(root / "fio.dat", "read", size, direct)
            return bw
        return run

    def rand_read(root, tag):
        warm(root / "fio.dat")
        _, iops = fio(root / "fio.dat", "randread", size, False, runtime=5, bs="4k")
        (root / "fio.dat").unlink()
        return iops

    state = {}
    workloads = [
        ("metadata storm, 1 dir (create+stat+unlink)", f"{nfiles} files", "s", False, meta_flat),
        ("metadata storm, tree of 100 dirs", f"{nfiles} files", "s", False, meta_tree),
        ("stat storm (git status style)", f"{10 * nfiles} stats", "s", False, stat_storm),
        ("readdir x10", f"{nfiles} entries", "s", False, readdir),
        ("untar mixed tree", f"{ntar} files", "s", False, untar),
        ("du of the tree", f"{ntar} files", "s", False, du),
        ("seq write buffered", f"{size} MiB", "MiB/s", True, seq_write(False)),
        ("seq read buffered", f"{size} MiB", "MiB/s", True, seq_read(False)),
        ("seq write O_DIRECT", f"{size} MiB", "MiB/s", True, seq_write(True)),
        ("seq read O_DIRECT", f"{size} MiB", "MiB/s", True, seq_read(True)),
        ("random 4k read (5 s)", f"{size} MiB file", "IOPS", True, rand_read),
    ]
    if a.workloads:
        keep = a.workloads.split(",")
        workloads = [w for w in workloads if any(k in w[0] for k in keep)]

    cfgs = {n: Config(n, base, out) for n in configs}
    rows = []
    cpu = collections.defaultdict(list)
    uring_was = set_uring(any("uring" in n for n in configs))
    try:
        for c in cfgs.values():
            log(f"starting {c.name}")
            c.start()
        for rep in range(a.reps):
            order = configs[rep % len(configs):] + configs[:rep % len(configs)]
            for (wname, scale_desc, unit, higher, fn) in workloads:
                for n in order:
                    try:
                        cpu_before = cfgs[n].cpu_seconds()
                        v = fn(cfgs[n].root, f"{rep}")
                        cpu[(wname, n)].append(cfgs[n].cpu_seconds() - cpu_before)
                    except (subprocess.CalledProcessError, OSError, KeyError) as e:
                        log(f"rep {rep} {wname:45} {n:15} FAILED: {e}")
                        continue
                    rows.append((wname, scale_desc, unit, n, rep, v))
                    log(f"rep {rep} {wname:45} {n:15} {v:10.3f} {unit}")
    finally:
        for c in cfgs.values():
            c.stop()
        shutil.rmtree(base, ignore_errors=True)
        set_uring(uring_was)
        if tmpfs:
            subprocess.run(["umount", tmpfs], check=False)
            tmpfs.rmdir()
    load_after = load1()

    with open(out / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["workload", "scale", "unit", "config", "rep", "value"])
        w.writerows(rows)

    notes = [f"Backing: {a.backing}. 1-minute load average: {load_before} before, "
             f"{load_after} after (the benchmark's own processes included).", ""]
    if load_before > BUSY_LOAD:
        notes[:0] = [f"**WARNING: the machine was busy (load {load_before} > {BUSY_LOAD} "
                     "before the run): these figures are not a result.**", ""]
    report(rows, configs, out, a.reps, s, notes)
    cpu_report(cpu, configs, workloads, out)
    log(f"wrote {out}/results.csv, {out}/table.md, {out}/speed.png")


if __name__ == "__main__":
    main()
