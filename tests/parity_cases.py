"""Question/context pairs for parity with the transformers pipeline: SQuAD text, long contexts
that need several windows, and non-ASCII text (accents, CJK, emoji)."""

from __future__ import annotations

NON_ASCII = [
    (
        "Où se trouve le café ?",
        "Le café « Ça va » est situé près de l'église Saint-Étienne, à Paris, où l'on sert des crêpes "
        "et du thé glacé. Ouvert depuis 1998, il accueille des étudiants de l'université voisine.",
    ),
    (
        "東京タワーはどこにありますか",
        "東京タワーは東京都港区芝公園にある電波塔です。高さは333メートルで、1958年に完成しました。",
    ),
    (
        "When does the party start?",
        "🎉 The launch party 🎉 starts at 5 pm in the Zoë Café 👍🏽 and ends at midnight. "
        "Tickets cost €12 — students pay ½ price; 👨‍👩‍👧 families get in free.",
    ),
    (
        "Who founded the company?",
        "Die Firma Müller & Söhne wurde 1887 von Jürgen Müller in Straßburg gegründet. "
        "Она производит часы. Η εταιρεία έχει 300 υπαλλήλους.",
    ),
]


def parity_pairs(squad: list[dict], n_squad: int = 24) -> list[tuple[str, str]]:
    """SQuAD questions spread over the dev set, long multi-window contexts, non-ASCII text."""
    step = max(1, len(squad) // n_squad)
    pairs = [(q["question"], q["context"]) for q in squad[::step][:n_squad]]
    contexts = sorted({q["context"] for q in squad}, key=len)
    long_context = " ".join(contexts[-3:])  # ~3 long paragraphs: several 384-token windows
    pairs += [(squad[-1]["question"], long_context), ("What is the name of the river?", long_context)]
    return pairs + NON_ASCII


# option sets compared with the pipeline; the last one forces many small windows
OPTION_SETS = [
    {},
    {"top_k": 3},
    {"handle_impossible_answer": True},
    {"top_k": 3, "handle_impossible_answer": True, "max_seq_len": 128, "doc_stride": 48},
]


def compare(ours: list, theirs: dict | list, atol: float = 1e-4) -> str | None:
    """None when the answers agree (text, start, end equal; score within atol), else a description."""
    theirs = theirs if isinstance(theirs, list) else [theirs]
    a = [(x.text, x.start, x.end) for x in ours]
    b = [(x["answer"], x["start"], x["end"]) for x in theirs]
    if a != b:
        return f"spans differ: onnxqa {a} vs pipeline {b}"
    for x, y in zip(ours, theirs):
        # documented difference: the pipeline's sum over windows can pass 1, onnxqa caps it there
        if abs(x.score - min(y["score"], 1.0)) > atol:
            return f"score {x.score} vs pipeline {y['score']} for {x.text!r}"
    return None
