#!/usr/bin/env python3
"""bench/report.py RESULTS_DIR: the markdown table of a bench/run.sh run.

RESULTS_DIR holds NAME.TLS.MODE.REP.txt files (loadgen key=value output),
crypto.txt (cryptobench), meta.txt (versions, machine) and optionally
perf.MODE.TLS.txt (perf report lines).  Medians over the repetitions.
With ref-relay / ref-echo (BENCH_ECHOD_REF) each tls-echod figure is also
given as a ratio to the reference: of the medians, and in parentheses the
range of the ratios repetition by repetition (measured back to back).
"""
import glob
import os
import re
import statistics
import sys

SERVERS = ["echod-relay", "ref-relay", "echod-echo", "ref-echo", "stunnel", "haproxy"]
TITLES = {"echod-relay": "tls-echod relay", "echod-echo": "tls-echod echo",
          "ref-relay": "reference relay", "ref-echo": "reference echo",
          "stunnel": "stunnel", "haproxy": "haproxy"}
PEERS = ["stunnel", "haproxy"]


def read_kv(path):
    d = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            k, sep, v = line.rstrip("\n").partition("=")
            if sep:
                d[k] = v
    return d


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def main():
    res = sys.argv[1]
    runs = {}
    byrep = {}  # (name, tls, mode) -> {rep: results}
    for p in glob.glob(os.path.join(res, "*.txt")):
        m = re.match(r"(.+)\.(12|13)\.(\w+)\.(\w+)\.txt$", os.path.basename(p))
        if m:
            kv = read_kv(p)
            runs.setdefault(m.group(1, 2, 3), []).append(kv)
            byrep.setdefault(m.group(1, 2, 3), {})[m.group(4)] = kv
    # cryptobench ran once per repetition: the median of each figure
    cruns = [read_kv(p) for p in sorted(glob.glob(os.path.join(res, "crypto.*.txt")))]
    crypto = dict(cruns[0]) if cruns else {}
    for k in crypto:
        vals = [num(c.get(k)) for c in cruns]
        if all(v is not None for v in vals):
            crypto[k] = "%.1f" % statistics.median(vals)
    meta = read_kv(os.path.join(res, "meta.txt"))

    def med(name, tls, mode, key):
        vals = [num(r.get(key)) for r in runs.get((name, tls, mode), [])]
        vals = [v for v in vals if v is not None]
        return statistics.median(vals) if vals else None

    def first(name, tls, mode, key):
        for r in runs.get((name, tls, mode), []):
            if key in r:
                return r[key]
        return None

    def bound_hs(tls, name):
        g = (first(name, tls, "full", "group") or "x25519").lower()
        g = "x25519" if "25519" in g else "p256"
        return num(crypto.get("bound_hs%s_%s_per_s" % (tls, g))), g

    def bound_bulk(tls, name):
        c = (first(name, tls, "bulk", "cipher") or "").upper()
        k = ("chacha20poly1305" if "CHACHA" in c else
             "aes256gcm" if "AES256" in c or "AES_256" in c else "aes128gcm")
        return num(crypto.get("bound_echo_%s_mb_per_s" % k)), k

    def bound_resume(tls):
        key = "bound_resume12_per_s" if tls == "12" else \
            "bound_resume13_dhe_x25519_per_s"
        return num(crypto.get(key))

    def fmt(v, digits=0):
        if v is None:
            return "–"
        if digits == 0:
            return "{:,.0f}".format(v)
        return "{:,.{}f}".format(v, digits)

    def vs_ref(name, tls, mode, key):
        """"0.97 (0.95–0.99)": NAME's median over its reference's, and the
        range of the ratios of the repetitions measured back to back."""
        ref = "ref-" + name[len("echod-"):]
        a, b = med(name, tls, mode, key), med(ref, tls, mode, key)
        if a is None or not b:
            return "–"
        ra, rb = byrep.get((name, tls, mode), {}), byrep.get((ref, tls, mode), {})
        rs = sorted(num(ra[r].get(key)) / num(rb[r].get(key)) for r in ra
                    if r in rb and num(ra[r].get(key)) is not None
                    and num(rb[r].get(key)))
        spread = " (%.2f–%.2f)" % (rs[0], rs[-1]) if len(rs) > 1 else ""
        return "%.2f%s" % (a / b, spread)

    present = [s for s in SERVERS if any(k[0] == s for k in runs)]
    peers = [s for s in PEERS if s in present]
    echods = [s for s in present if s.startswith("echod-")]
    refs = [s for s in present if s.startswith("ref-")]

    # (label, mode, key, higher_is_better, digits, bound function or None)
    rows = [
        ("full mTLS handshakes/s", "full", "hs_per_s", True, 0, "hs"),
        ("resumed handshakes/s", "resume", "resumed_per_s", True, 0, "resume"),
        ("resumption ratio achieved", "resume", "resumption_ratio", True, 3, None),
        ("64 B echo round trips/s, 32 conns", "latency", "rt_per_s", True, 0, None),
        ("  p50 µs", "latency", "p50_us", False, 0, None),
        ("  p99 µs", "latency", "p99_us", False, 0, None),
        ("  p999 µs", "latency", "p999_us", False, 0, None),
        ("p99 µs, full handshakes arriving at ½ capacity", "mixed", "p99_us", False, 0, None),
        ("  handshakes/s arriving meanwhile", "mixed", "hs_per_s", True, 0, None),
        ("bulk echo MB/s each way", "bulk", "mb_per_s", True, 0, "bulk"),
        ("RSS per idle connection, KiB", "idle", "rss_per_conn_kb", False, 1, None),
    ]

    def table(tls, names, with_peers):
        out = []
        cols = ["figure", "crypto bound"] + [TITLES[n] for n in names]
        if with_peers and peers and echods:
            cols += ["tls-echod ÷ best peer"]
        paired = [n for n in names if n.startswith("echod-") and
                  "ref-" + n[len("echod-"):] in names]
        if paired:
            cols += ["tls-echod ÷ reference" + (" (%s)" % " / ".join(
                n[len("echod-"):] for n in paired) if len(paired) > 1 else "")]
        out.append("| " + " | ".join(cols) + " |")
        out.append("|" + "---|" * len(cols))
        for label, mode, key, hib, digits, bkind in rows:
            if not any((n, tls, mode) in runs for n in names):
                continue
            b = None
            bnote = ""
            ref = echods[0] if echods else names[0]
            if bkind == "hs":
                b, g = bound_hs(tls, ref)
                bnote = " (%s)" % ("X25519" if g == "x25519" else "P-256")
            elif bkind == "bulk":
                b, k = bound_bulk(tls, ref)
                bnote = " (%s)" % k
            elif bkind == "resume":
                b = bound_resume(tls)
                bnote = "" if tls == "12" else " (psk_dhe_ke)"
            cells = [label, (fmt(b) + bnote) if b else "–"]
            vals = {}
            for n in names:
                v = med(n, tls, mode, key)
                vals[n] = v
                c = fmt(v, digits)
                if n.startswith(("echod-", "ref-")) and b and v is not None:
                    c += " (%.0f %% of bound)" % (100.0 * v / b)
                cells.append(c)
            if with_peers and peers and echods:
                pv = [vals[p] for p in peers if vals.get(p) is not None]
                ev = [vals[e] for e in echods if vals.get(e) is not None]
                if pv and ev and key != "resumption_ratio":
                    best = max(pv) if hib else min(pv)
                    ratios = ["%.2f" % (e / best) if best else "–" for e in ev]
                    cells.append(" / ".join(ratios) +
                                 ("" if hib else " (lower is better)"))
                else:
                    cells.append("")
            if paired:
                cells.append("" if key == "resumption_ratio" else " / ".join(
                    vs_ref(n, tls, mode, key) for n in paired) +
                    ("" if hib else " (lower is better)"))
            out.append("| " + " | ".join(cells) + " |")
        return out

    lines = []
    lines.append("Measured %s on %s (%s CPUs), kernel %s; load average at the end: %s."
                 % (meta.get("date", "?"), meta.get("cpu", "?"), meta.get("cpus", "?"),
                    meta.get("kernel", "?"), meta.get("load", "?")))
    lines.append("")
    lines.append("- " + meta.get("tls_echod", "tls-echod ?"))
    if refs:
        lines.append("- reference: " + meta.get("tls_echod_ref", "?"))
    for k in ("openssl", "stunnel", "haproxy"):
        if k in meta:
            lines.append("- " + meta[k])
    lines.append("- crypto bound: mbedTLS %s (Everest X25519 %s), cryptobench pinned "
                 "like the server, %d run(s)" % (crypto.get("mbedtls_version", "?"),
                                      "on" if crypto.get("everest", "").startswith("1") else "off",
                                      len(cruns)))
    lines.append("- " + meta.get("settings", ""))
    lines.append("")
    names12 = [n for n in present if (n, "12", "full") in runs or
               any(k[0] == n and k[1] == "12" for k in runs)]
    if names12:
        lines.append("### TLS 1.2, ECDHE-ECDSA-AES128-GCM-SHA256, mTLS (P-256 certificates)")
        lines.append("")
        lines += table("12", names12, True)
        lines.append("")
    names13 = [n for n in echods + refs if any(k[0] == n and k[1] == "13" for k in runs)]
    names13.sort(key=SERVERS.index)
    if names13:
        lines.append("### TLS 1.3, TLS_AES_128_GCM_SHA256, tls-echod only")
        lines.append("")
        lines += table("13", names13, False)
        lines.append("")
    neg = []
    for (n, tls, mode), rs in sorted(runs.items()):
        if mode == "full" and rs:
            neg.append("%s TLS 1.%s: %s %s %s" % (TITLES.get(n, n), tls[1],
                       rs[0].get("tls_version"), rs[0].get("cipher"), rs[0].get("group")))
    if neg:
        lines.append("Negotiated: " + "; ".join(neg) + ".")
        lines.append("")
    errs = []
    for (n, tls, mode), rs in sorted(runs.items()):
        e = sum(int(num(r.get("errors")) or 0) for r in rs)
        if e:
            errs.append("%s TLS 1.%s %s: %d" % (TITLES.get(n, n), tls[1], mode, e))
    lines.append("Client-side errors: " + ("; ".join(errs) if errs else "none") + ".")
    lines.append("")
    lines.append("Crypto micro-benchmark (µs per operation, one core): ECDSA P-256 sign %s, "
                 "verify %s; ECDHE X25519 %s (TLS 1.2, legacy API) / %s (TLS 1.3, PSA), "
                 "P-256 %s / %s; 16 KiB record decrypt+encrypt AES-128-GCM %s+%s, "
                 "ChaCha20-Poly1305 %s+%s; TLS 1.2 ticket resumption %s."
                 % tuple(crypto.get(k, "?") for k in (
                     "ecdsa_p256_sign_us", "ecdsa_p256_verify_us",
                     "ecdhe_x25519_tls12_us", "ecdhe_x25519_tls13_us",
                     "ecdhe_p256_tls12_us", "ecdhe_p256_tls13_us",
                     "aes128gcm_decrypt_16k_us", "aes128gcm_encrypt_16k_us",
                     "chacha20poly1305_decrypt_16k_us",
                     "chacha20poly1305_encrypt_16k_us", "ticket12_resume_us")))
    for p in sorted(glob.glob(os.path.join(res, "perf.*.txt"))):
        m = re.match(r"perf\.(\w+)\.(12|13)\.txt$", os.path.basename(p))
        if not m:
            continue
        lines.append("")
        lines.append("perf, tls-echod relay worker, %s TLS 1.%s (self time):"
                     % (m.group(1), m.group(2)[1]))
        lines.append("")
        lines.append("```")
        with open(p, encoding="utf-8", errors="replace") as f:
            lines += [ln.rstrip() for ln in f if ln.strip()]
        lines.append("```")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
