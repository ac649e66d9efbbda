"""Tables, JSON and plots of `bench.py e2e`."""
import json
import os

RATIOS = (("cold", "greedy"), ("cold_two_pass", "cold"), ("cold_two_models", "cold"), ("hf", "cold"))


def e2e_markdown(result):
    lines = ["| variant | B | mode | ms/step (median) | p90 | TTFT ms | tokens/s | peak RSS MB | floor fraction |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["e2e"]:
        lines.append(f"| {r['variant']} | {r['batch']} | {r['mode']} | {r['ms_per_step_median']} | "
                     f"{r['ms_per_step_p90']} | {r['ttft_ms']} | {r['tokens_per_s']} | {r['peak_rss_mb']:.0f} | "
                     f"{r['floor_fraction']} |")
    by = {(r["variant"], r["batch"]): r for r in result["e2e"]}
    batches = sorted({r["batch"] for r in result["e2e"]})
    lines += ["", "| ratio (ms/step) | " + " | ".join(f"B={b}" for b in batches) + " |",
              "|---|" + "---|" * len(batches)]
    for num, den in RATIOS:
        if any((num, b) in by for b in batches):
            cells = [f"{by[(num, b)]['ms_per_step_median'] / by[(den, b)]['ms_per_step_median']:.2f}"
                     if (num, b) in by and (den, b) in by else "-" for b in batches]
            lines.append(f"| {num} / {den} | " + " | ".join(cells) + " |")
    samples = result["bandwidth_samples_gbps"]
    lines.append(f"\nmemory read bandwidth: {result['bandwidth_gbps']} GB/s, the median of {len(samples)} "
                 f"measurements, one after each variant's steps in each round ({min(samples)} to {max(samples)})")
    return "\n".join(lines) + "\n"


def e2e_plot(result, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for variant in dict.fromkeys(r["variant"] for r in result["e2e"]):
        rows = sorted((r for r in result["e2e"] if r["variant"] == variant), key=lambda r: r["batch"])
        ax.plot([r["batch"] for r in rows], [r["ms_per_step_median"] for r in rows], marker="o", label=variant)
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
