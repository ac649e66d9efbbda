"""llama.cpp's sentencepiece tokenization (llm_tokenizer_spm), plainly and slowly: the test oracle."""


def llama_cpp_spm(text, tokens, scores, types, space_prefix=False):
    """Ids of `text` (no BOS): control/user-defined pieces split out first; in each text between them
    (a space in front where space_prefix), spaces become ▁ and the adjacent pair whose join is a
    piece of the highest score (leftmost on ties) merges until none does; leftovers become bytes."""
    ids = {t: i for i, t in enumerate(tokens)}
    specials = sorted((t for t, k in zip(tokens, types) if k in (3, 4) and t), key=len, reverse=True)
    out, text_run, pos = [], "", 0

    def flush(run):
        syms = list((" " + run if space_prefix else run).replace(" ", "▁"))
        while True:
            joins = [(scores[ids[a + b]], -j) for j, (a, b) in enumerate(zip(syms, syms[1:])) if a + b in ids]
            if not joins:
                break
            j = -max(joins)[1]
            syms[j:j + 2] = [syms[j] + syms[j + 1]]
        for s in syms:
            out.extend([ids[s]] if s in ids else [ids[f"<0x{b:02X}>"] for b in s.encode()])

    while pos < len(text):
        special = next((s for s in specials if text.startswith(s, pos)), None)
        if special is None:
            text_run, pos = text_run + text[pos], pos + 1
            continue
        if text_run:
            flush(text_run)
        out.append(ids[special])
        text_run, pos = "", pos + len(special)
    if text_run:
        flush(text_run)
    return out
