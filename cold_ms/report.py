"""What evaluations and benchmarks write: JSON, a markdown table and a PNG plot each.

An evaluation (scripts/eval.py): summary.json/.md/.png, accuracy against beta; with --tune,
the validation curve, the chosen setting and the test comparison. An end-to-end benchmark
(bench.py e2e): ms per decode step per variant, weight format and batch size.
"""
import json
import os


def _percent(x):
    return "-" if x is None else f"{100 * x:.1f}%"


def _interval(ci):
    return f"{100 * ci[0]:.1f}-{100 * ci[1]:.1f}%"


def _dash(x):
    return "-" if x is None else x


def _table(results):
    """The results table; counterfacts add the rate of answers naming the real-world value, both
    knowledge tasks the rate naming neither value."""
    optional = [(key, title) for key, title in (("base_value", "base-value rate"), ("neither", "neither rate"))
                if any(f"{key}_rate" in r for r in results)]
    lines = ["| mode | alpha | beta | n | accuracy | 95% CI |" + "".join(f" {t} | 95% CI |" for _, t in optional)
             + " tokens/answer | tokens/s |", "|---|---|---|---|---|---|" + "---|---|" * len(optional) + "---|---|"]
    for r in results:
        cells = [r["mode"], _dash(r["alpha"]), _dash(r["beta"]), r["n"], _percent(r["accuracy"]), _interval(r["ci95"])]
        for key, _ in optional:
            cells += [_percent(r.get(f"{key}_rate")), _interval(r.get(f"{key}_ci95", [0.0, 0.0]))]
        cells += [_dash(r.get("mean_tokens")), _dash(r["tokens_per_s"])]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _paired_lines(scores, where):
    """One sentence per score of {score: stats.paired(...)} (CoLD against expert greedy)."""
    return [f"Paired on {p['n']} {where} ({score}): CoLD alone {p['only_cold']}, greedy alone {p['only_greedy']}, "
            f"both {p['both']}, neither {p['neither']}; exact McNemar p = {p['p_value']:.4g}."
            for score, p in scores.items()]


def markdown(summary):
    """The results table, then each CoLD run paired against expert greedy."""
    lines = [_table(summary["results"])]
    for name, scores in summary.get("paired", {}).items():
        lines += _paired_lines(scores, f"items, {name} against expert greedy")
    return "\n".join(lines) + "\n"


def _figure(ncols=1):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt, *plt.subplots(1, ncols, figsize=(6 * ncols, 4))


def _save(plt, fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(result, stem, text, plot):
    """stem.json (the result), stem.md (text) and stem.png (plot(result, path))."""
    with open(stem + ".json", "w") as f:
        json.dump(result, f, indent=1)
    with open(stem + ".md", "w") as f:
        f.write(text)
    plot(result, stem + ".png")


def plot(summary, path):
    plt, fig, ax = _figure()
    cold = [r for r in summary["results"] if r["mode"] == "cold" and r["accuracy"] is not None]
    for alpha in sorted({r["alpha"] for r in cold}):
        rows = sorted((r for r in cold if r["alpha"] == alpha), key=lambda r: r["beta"])
        betas = [r["beta"] for r in rows]
        acc = [100 * r["accuracy"] for r in rows]
        err = [[100 * (r["accuracy"] - r["ci95"][0]) for r in rows], [100 * (r["ci95"][1] - r["accuracy"]) for r in rows]]
        ax.errorbar(betas, acc, yerr=err, marker="o", capsize=3, label=f"CoLD alpha={alpha}")
    for mode, style in (("base", ":"), ("expert", "--")):
        for r in summary["results"]:
            if r["mode"] == mode and r["accuracy"] is not None:
                ax.axhline(100 * r["accuracy"], ls=style, color="gray" if mode == "base" else "black",
                           label=f"{mode} greedy")
    ax.set_xlabel("beta")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{summary['task']}: adapter {summary['adapter']} vs amateur {summary['amateur']}")
    ax.legend(fontsize=8)
    _save(plt, fig, path)


def write_summary(summary, out_dir):
    write_outputs(summary, os.path.join(out_dir, "summary"), markdown(summary), plot)


def tune_markdown(summary):
    """The choice, the validation curve (alpha rows, beta columns), the test table and the
    paired tests of a tuned evaluation."""
    val, test, chosen = summary["validation"], summary["test"], summary["chosen"]
    betas = summary["grid"]["beta"]
    acc = {(r["alpha"], r["beta"]): r["accuracy"] for r in val["curve"]}
    lines = [f"{summary['task']}: adapter {summary['adapter']} vs amateur {summary['amateur']}; "
             f"{summary['protocol']}.", "",
             f"Chosen on validation (n={val['n']}): alpha {chosen['alpha']:g}, beta {chosen['beta']:g}"
             + ("" if summary.get("beta_schedule", "fixed") == "fixed" else f" ({summary['beta_schedule']} schedule)")
             + f" ({summary['rule']}).", "",
             f"Validation accuracy per setting (expert greedy: {_percent(val['expert']['accuracy'])}):", "",
             "| alpha \\ beta | " + " | ".join(f"{b:g}" for b in betas) + " |", "|---|" + "---|" * len(betas)]
    for a in summary["grid"]["alpha"]:
        lines.append(f"| {a:g} | " + " | ".join(_percent(acc.get((a, b))) for b in betas) + " |")
    lines += ["", f"Test (n={test['n']}):", "", _table(test["results"])] + _paired_lines(test["paired"], "test items")
    return "\n".join(lines) + "\n"


def _errorbar(ax, x, r, key, ci, **style):
    y = 100 * r[key]
    ax.errorbar([x], [y], yerr=[[y - 100 * r[ci][0]], [100 * r[ci][1] - y]], marker="o", capsize=4, **style)


def tune_plot(summary, path):
    """Left: validation accuracy against beta per alpha, the choice starred. Right: greedy
    and the chosen CoLD on test with 95% intervals (and base-value rates for counterfacts,
    neither rates for both knowledge tasks)."""
    plt, fig, (left, right) = _figure(ncols=2)
    val, test, chosen = summary["validation"], summary["test"], summary["chosen"]
    for alpha in summary["grid"]["alpha"]:
        rows = sorted((r for r in val["curve"] if r["alpha"] == alpha and r["accuracy"] is not None),
                      key=lambda r: r["beta"])
        left.plot([r["beta"] for r in rows], [100 * r["accuracy"] for r in rows], marker="o", label=f"alpha={alpha:g}")
    if val["expert"]["accuracy"] is not None:
        left.axhline(100 * val["expert"]["accuracy"], ls="--", color="black", label="expert greedy")
    best = next(r for r in val["curve"] if (r["alpha"], r["beta"]) == (chosen["alpha"], chosen["beta"]))
    left.plot([best["beta"]], [100 * best["accuracy"]], marker="*", ms=16, color="red", ls="", label="chosen")
    left.set_xscale("log")
    left.set_xticks(summary["grid"]["beta"], [f"{b:g}" for b in summary["grid"]["beta"]], minor=False)
    left.minorticks_off()
    left.set(xlabel="beta", ylabel="accuracy (%)", title=f"validation (n={val['n']})")
    left.legend(fontsize=7)
    for x, r in enumerate(test["results"]):
        _errorbar(right, x, r, "accuracy", "ci95", color="C0", label="accuracy" if x == 0 else None)
        if "base_value_rate" in r:
            _errorbar(right, x + 0.1, r, "base_value_rate", "base_value_ci95", color="C3",
                      label="base-value rate" if x == 0 else None)
        if "neither_rate" in r:
            _errorbar(right, x + 0.2, r, "neither_rate", "neither_ci95", color="gray",
                      label="neither rate" if x == 0 else None)
    right.set_xticks([0, 1], ["expert greedy", f"CoLD a={chosen['alpha']:g} b={chosen['beta']:g}"])
    right.set(xlim=(-0.5, 1.6), ylabel="% of test items",
              title=f"test (n={test['n']}), McNemar p = {test['paired']['correct']['p_value']:.3g}")
    right.legend(fontsize=7)
    fig.suptitle(f"{summary['task']}: adapter {summary['adapter']} vs amateur {summary['amateur']}")
    _save(plt, fig, path)


def write_tune_summary(summary, out_dir):
    write_outputs(summary, os.path.join(out_dir, "summary"), tune_markdown(summary), tune_plot)


# ---- bench.py e2e ----------------------------------------------------------------------
RATIOS = (("cold", "greedy"), ("cold_two_pass", "cold"), ("cold_two_models", "cold"))
PEER_RATIOS = (("greedy", "llamacpp"), ("cold", "llamacpp"), ("hf", "cold"))


def _format(row):
    """What an e2e row reads: its weights, and its KV cache dtype where that is not float32."""
    kv = row.get("kv_dtype", "float32")
    return row["weights"] if kv in ("float32", "its own") else f"{row['weights']}, {kv} KV"


def _ratio_lines(result):
    """Ratios of medians within one run: per weight format (and KV cache dtype), and against the peers."""
    by = {(r["variant"], _format(r), r["batch"]): r["ms_per_step_median"] for r in result["e2e"]}
    batches = sorted({r["batch"] for r in result["e2e"]})
    formats = list(dict.fromkeys(_format(r) for r in result["e2e"] if r["weights"] != "checkpoint"))
    lines = ["| ratio (ms/step) | " + " | ".join(f"B={b}" for b in batches) + " |", "|---|" + "---|" * len(batches)]

    def row(name, pick):
        cells = [pick(b) for b in batches]
        if any(c is not None for c in cells):
            lines.append(f"| {name} | " + " | ".join("-" if c is None else f"{c:.2f}" for c in cells) + " |")

    def ratio(num, den):
        return None if num not in by or den not in by else by[num] / by[den]

    for w in formats:
        for num, den in RATIOS:
            row(f"{num} / {den} ({w})", lambda b: ratio((num, w, b), (den, w, b)))
        row(f"cold at B / greedy at 2B ({w})", lambda b: ratio(("cold", w, b), ("greedy", w, 2 * b)))
        for num, den in PEER_RATIOS:
            row(f"{num} ({w}) / {den}" if num != "hf" else f"hf / cold ({w})",
                lambda b: ratio((num, w if num != "hf" else "checkpoint", b), (den, "checkpoint" if den != "cold"
                                                                              else w, b)))
    return lines


def e2e_markdown(result):
    lines = [f"machine: {result.get('machine', '?')}", "",
             "| variant | weights | KV cache | reads | B | mode | ms/step (median) | p90 | TTFT ms | tokens/s | "
             "peak RSS MB | floor fraction |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["e2e"]:
        lines.append(f"| {r['variant']} | {r['weights']} | {r.get('kv_dtype', 'float32')} | {r['reads']} | "
                     f"{r['batch']} | {r['mode']} | "
                     f"{r['ms_per_step_median']} | {r['ms_per_step_p90']} | {r['ttft_ms']} | {r['tokens_per_s']} | "
                     f"{r['peak_rss_mb']:.0f} | {r['floor_fraction']} |")
    lines += [""] + _ratio_lines(result)
    samples = result["bandwidth_samples_gbps"]
    lines.append(f"\nmemory read bandwidth: {result['bandwidth_gbps']} GB/s, the median of {len(samples)} "
                 f"measurements, one after each variant's steps in each round ({min(samples)} to {max(samples)})")
    return "\n".join(lines) + "\n"


def e2e_plot(result, path):
    plt, fig, ax = _figure()
    for key in dict.fromkeys((r["variant"], _format(r)) for r in result["e2e"]):
        rows = sorted((r for r in result["e2e"] if (r["variant"], _format(r)) == key), key=lambda r: r["batch"])
        ax.plot([r["batch"] for r in rows], [r["ms_per_step_median"] for r in rows], marker="o",
                label=f"{key[0]} ({key[1]})")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch (requests)")
    ax.set_ylabel("ms per decode step (median)")
    ax.legend(fontsize=8)
    _save(plt, fig, path)


def write_e2e(result, json_path=None):
    text = e2e_markdown(result)
    print(text)
    if json_path:
        write_outputs(result, os.path.splitext(json_path)[0], text, e2e_plot)


def serve_plot(rows, path, title, beta):
    """`bench.py serve --plot`: output tokens/s against clients, one line per server (and slot count
    of ours)."""
    plt, fig, ax = _figure()
    lines = {}
    for r in rows:
        label = "llama-server (greedy)" if r["server"] != "cold_ms" else \
            f"cold_ms (--slots {r['slots']}, {'greedy' if beta == 0 else f'CoLD beta {beta}'})"
        lines.setdefault(label, []).append((r["clients"], r["output_tokens_per_s"]))
    for label, points in lines.items():
        xs, ys = zip(*sorted(points))
        ax.plot(xs, ys, marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("output tokens/s")
    ax.set_title(title, fontsize=9)
    ax.legend()
    _save(plt, fig, path)
