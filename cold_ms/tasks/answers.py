"""Reading answers out of generated text: numbers, option letters and short spans."""
import re
import unicodedata

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_LETTER = re.compile(r"\b([A-E])\b")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_NOT_WORD = re.compile(r"[^0-9a-z]+")


def extract_number(text):
    """The number after '####', else the last number in the text (commas dropped), or None."""
    tail = text.split("####")[-1] if "####" in text else text
    found = _NUMBER.findall(tail) or _NUMBER.findall(text)
    return found[-1].replace(",", "").rstrip(".") if found else None


def extract_letter(text):
    """The answer letter A-E: after 'Answer:' if present, else the first standalone letter."""
    tail = text.split("Answer:")[-1] if "Answer:" in text else text
    m = _LETTER.search(tail)
    return m.group(1) if m else None


def same_number(prediction, gold):
    pred = extract_number(prediction)
    try:
        return pred is not None and abs(float(pred) - float(gold)) < 1e-6
    except ValueError:
        return False


def normalise(text):
    """Lower case, accents and punctuation dropped, no articles, single spaces
    ('The Brasília!' -> 'brasilia'), as in SQuAD's exact match."""
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    text = _ARTICLES.sub(" ", text.lower())
    return " ".join(_NOT_WORD.sub(" ", text).split())


def exact_span(prediction, gold):
    """The first non-empty line of the prediction is the gold span, after normalisation."""
    lines = [line for line in prediction.strip().splitlines() if line.strip()]
    return bool(lines) and normalise(lines[0]) == normalise(gold)


def mentions(prediction, value):
    """The prediction names the value as whole words ('... is Lisbon.' mentions 'Lisbon',
    'Parisian' does not mention 'Paris')."""
    return f" {normalise(value)} " in f" {normalise(prediction)} "
