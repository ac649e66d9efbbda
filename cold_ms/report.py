"""summary.json, a markdown table and a PNG plot of an evaluation (accuracy against beta)."""
import json
import os


def markdown(summary):
    lines = [f"| mode | alpha | beta | n | accuracy | 95% CI | tokens/s |", "|---|---|---|---|---|---|---|"]
    for r in summary["results"]:
        acc = "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.1f}%"
        ci = f"{100 * r['ci95'][0]:.1f}-{100 * r['ci95'][1]:.1f}%"
        lines.append(f"| {r['mode']} | {r['alpha'] if r['alpha'] is not None else '-'} | "
                     f"{r['beta'] if r['beta'] is not None else '-'} | {r['n']} | {acc} | {ci} | "
                     f"{r['tokens_per_s'] if r['tokens_per_s'] is not None else '-'} |")
    return "\n".join(lines) + "\n"


def plot(summary, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
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
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_summary(summary, out_dir):
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(out_dir, "summary.md"), "w") as f:
        f.write(markdown(summary))
    plot(summary, os.path.join(out_dir, "summary.png"))
