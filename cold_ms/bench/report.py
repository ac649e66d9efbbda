"""Tables, JSON and plots of `bench.py e2e`."""
import json
import os

RATIOS = (("cold", "greedy"), ("cold_two_pass", "cold"), ("cold_two_models", "cold"))
PEER_RATIOS = (("greedy", "llamacpp"), ("cold", "llamacpp"), ("hf", "cold"))


def _ratio_lines(result):
    """Ratios of medians within one run: per weight format, and against the peers."""
    by = {(r["variant"], r["weights"], r["batch"]): r["ms_per_step_median"] for r in result["e2e"]}
    batches = sorted({r["batch"] for r in result["e2e"]})
    formats = list(dict.fromkeys(r["weights"] for r in result["e2e"] if r["weights"] != "checkpoint"))
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
             "| variant | weights | reads | B | mode | ms/step (median) | p90 | TTFT ms | tokens/s | peak RSS MB | "
             "floor fraction |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["e2e"]:
        lines.append(f"| {r['variant']} | {r['weights']} | {r['reads']} | {r['batch']} | {r['mode']} | "
                     f"{r['ms_per_step_median']} | {r['ms_per_step_p90']} | {r['ttft_ms']} | {r['tokens_per_s']} | "
                     f"{r['peak_rss_mb']:.0f} | {r['floor_fraction']} |")
    lines += [""] + _ratio_lines(result)
    samples = result["bandwidth_samples_gbps"]
    lines.append(f"\nmemory read bandwidth: {result['bandwidth_gbps']} GB/s, the median of {len(samples)} "
                 f"measurements, one after each variant's steps in each round ({min(samples)} to {max(samples)})")
    return "\n".join(lines) + "\n"


def e2e_plot(result, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in dict.fromkeys((r["variant"], r["weights"]) for r in result["e2e"]):
        rows = sorted((r for r in result["e2e"] if (r["variant"], r["weights"]) == key), key=lambda r: r["batch"])
        ax.plot([r["batch"] for r in rows], [r["ms_per_step_median"] for r in rows], marker="o",
                label=f"{key[0]} ({key[1]})")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch (requests)")
    ax.set_ylabel("ms per decode step (median)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_e2e(result, json_path=None):
    text = e2e_markdown(result)
    print(text)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(result, f, indent=1)
        stem = os.path.splitext(json_path)[0]
        with open(stem + ".md", "w") as f:
            f.write(text)
        e2e_plot(result, stem + ".png")
