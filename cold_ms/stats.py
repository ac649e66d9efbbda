"""Intervals and paired tests for accuracies over the same evaluation items."""
import math


def wilson(correct, n, z=1.96):
    """95% Wilson score interval of a proportion."""
    if n == 0:
        return [0.0, 0.0]
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def mcnemar(b, c):
    """Exact McNemar test: two-sided binomial test (p = 1/2) of the b + c discordant pairs,
    p = min(1, 2 P[X <= min(b, c)]) with X ~ Binomial(b + c, 1/2)."""
    n = b + c
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2 ** n)  # Python divides big integers exactly rounded


def paired(greedy, cold, key="correct"):
    """CoLD against greedy on the items both have ({id: row}), for one score: how many
    items each alone gets, both, neither, and the exact McNemar p-value."""
    pairs = [(bool(greedy[i][key]), bool(cold[i][key])) for i in greedy.keys() & cold.keys()]
    only_cold, only_greedy = sum(c and not g for g, c in pairs), sum(g and not c for g, c in pairs)
    return {"n": len(pairs), "both": sum(g and c for g, c in pairs), "neither": sum(not (g or c) for g, c in pairs),
            "only_cold": only_cold, "only_greedy": only_greedy, "p_value": round(mcnemar(only_cold, only_greedy), 6)}
