"""Incremental detokenization: print text as tokens arrive, never half a UTF-8 character."""


class TextStream:
    def __init__(self, tokenizer):
        self.tokenizer, self.ids, self.sent = tokenizer, [], ""

    def push(self, token_id):
        """Add a token; return the newly completed text (may be empty)."""
        self.ids.append(int(token_id))
        text = self.tokenizer.decode(self.ids)
        if text.endswith("\ufffd"):
            return ""  # a multi-byte character is still incomplete
        new = text[len(self.sent):] if text.startswith(self.sent) else text
        self.sent = text
        return new
