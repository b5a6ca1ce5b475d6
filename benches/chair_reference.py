#!/usr/bin/env python3
"""CHAIR reference logic in Python: the parity oracle and the speed peer of
reward-core's `metrics::chair` (reference mode).

THIS IS A RE-IMPLEMENTATION, not chair.py. The original `utils/chair.py`
(LisaAnne/Hallucination @6e4d33c, BSD 2-Clause per its README) is not vendored
here; this script was written from the rules in shared/data/chair_rules.md:
lower-case, nltk.word_tokenize, Pattern 2.6 singularize, bigram merge with the
double-word table, the toilet/seat rule, synonym lookup with chair.py's
verbatim keys, GT = instance categories + objects of the human captions.

Two parts differ from what chair.py ran, for lack of the originals offline:
  * Punkt (NLTK's sentence splitter) needs `punkt_tab` data that is not
    available: `sentences()` approximates it with the same rule as
    reward-core's `metrics::nltk::sentences`, then NLTK's real word tokenizer
    runs per sentence (`word_tokenize(s, preserve_line=True)`).
  * Pattern is not installable: `singularize()` restates Pattern 2.6's rules
    (regexes and word lists, missing commas included); `--check-vectors`
    compares it with data/chair/chair_singularize_vectors.tsv.

Usage:
  chair_reference.py eval CAPTIONS.jsonl ANNOTATION_DIR   -> JSON report on stdout
  chair_reference.py bench CAPTIONS.jsonl ANNOTATION_DIR REPEATS -> timing JSON
  chair_reference.py tokens SENTENCES.txt                 -> NLTK tokens, JSON lines
  chair_reference.py check-vectors
Needs nltk (pinned in tests/fixtures/requirements.txt); nothing is downloaded.
"""
import glob
import json
import os
import re
import sys
import time

from nltk.tokenize import word_tokenize

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DATA = os.path.join(ROOT, "data", "chair")

# ---------------------------------------------------------------- singularize
_PREPOSITIONS = set(
    "about before during of till above behind except off to across below for on "
    "under after beneath from onto until among beside in out unto around besides "
    "into over upon at between near since with athwart betwixt beyond but by".split()
)
# Pattern 2.6's lists with its missing commas (concatenated entries).
_UNINFLECTED = set(
    "bison debris headquarters pincers trout bream diabetes herpes pliers tuna breeches "
    "djinn high-jinks proceedings whiting britches eland homework rabies wildebeestcarp "
    "elk innings salmon chassis flounder jackanapes scissors christmas gallows mackerel "
    "series clippers georgia measles shears cod graffiti mews species contretemps mumps "
    "swine corps news swiss".split()
)
_UNCOUNTABLE = set(
    "advice equipment happiness luggage news software bread fruit information mathematics "
    "progress understanding butter furniture ketchup mayonnaise research watercheese "
    "garbage knowledge meat rice electricity gravel love mustard sand".split()
)
_IE = set(
    "alergie cutie hoagie newbie softie veggie auntie doggie hottie nightie sortie weenie "
    "beanie eyrie indie oldie stoolie yuppie birdie freebie junkie ^pie sweetie zombiebogie "
    "goonie laddie pixie techie bombie groupie laramie quickie ^tie collie hankie lingerie "
    "reverie toughie cookie hippie meanie rookie valkyrie".split()
)
_IRREGULAR = dict(
    pair.split(":")
    for pair in (
        "atlantes:atlas atlases:atlas axes:axe beeves:beef brethren:brother children:child "
        "corpora:corpus corpuses:corpus ephemerides:ephemeris feet:foot ganglia:ganglion "
        "geese:goose genera:genus genii:genie graffiti:graffito helves:helve kine:cow "
        "leaves:leaf loaves:loaf men:man mongooses:mongoose monies:money moves:move "
        "mythoi:mythos numena:numen occipita:occiput octopodes:octopus opera:opus "
        "opuses:opus our:my oxen:ox penes:penis penises:penis people:person sexes:sex "
        "soliloquies:soliloquy teeth:tooth testes:testis trilbys:trilby turves:turf zoa:zoon"
    ).split()
)
_RULES = [
    (r"(?i)(.)ae$", r"\1a"), (r"(?i)(.)itis$", r"\1itis"), (r"(?i)(.)eaux$", r"\1eau"),
    (r"(?i)(quiz)zes$", r"\1"), (r"(?i)(matr)ices$", r"\1ix"),
    (r"(?i)(ap|vert|ind)ices$", r"\1ex"), (r"(?i)^(ox)en", r"\1"),
    (r"(?i)(alias|status)es$", r"\1"), (r"(?i)([octop|vir])i$", r"\1us"),
    (r"(?i)(cris|ax|test)es$", r"\1is"), (r"(?i)(shoe)s$", r"\1"), (r"(?i)(o)es$", r"\1"),
    (r"(?i)(bus)es$", r"\1"), (r"(?i)([m|l])ice$", r"\1ouse"),
    (r"(?i)(x|ch|ss|sh)es$", r"\1"), (r"(?i)(m)ovies$", r"\1ovie"),
    (r"(?i)(.)ombies$", r"\1ombie"), (r"(?i)(s)eries$", r"\1eries"),
    (r"(?i)([^aeiouy]|qu)ies$", r"\1y"), (r"([aeo]l)ves$", r"\1f"),
    (r"([^d]ea)ves$", r"\1f"), (r"arves$", "arf"), (r"erves$", "erve"),
    (r"([nlw]i)ves$", r"\1fe"), (r"(?i)([lr])ves$", r"\1f"), (r"([aeo])ves$", r"\1ve"),
    (r"(?i)(sive)s$", r"\1"), (r"(?i)(tive)s$", r"\1"), (r"(?i)(hive)s$", r"\1"),
    (r"(?i)([^f])ves$", r"\1fe"), (r"(?i)(^analy)ses$", r"\1sis"),
    (r"(?i)((a)naly|(b)a|(d)iagno|(p)arenthe|(p)rogno|(s)ynop|(t)he)ses$", r"\1\2sis"),
    (r"(?i)(.)opses$", r"\1opsis"), (r"(?i)(.)yses$", r"\1ysis"),
    (r"(?i)(h|d|r|o|n|b|cl|p)oses$", r"\1ose"),
    (r"(?i)(fruct|gluc|galact|lact|ket|malt|rib|sacchar|cellul)ose$", r"\1ose"),
    (r"(?i)(.)oses$", r"\1osis"), (r"(?i)([ti])a$", r"\1um"), (r"(?i)(n)ews$", r"\1ews"),
    (r"(?i)s$", ""),
]
_RULES = [(re.compile(p), r) for p, r in _RULES]


def singularize(word):
    """Pattern 2.6 singularize (restated)."""
    if "-" in word:
        parts = word.split("-")
        if len(parts) > 1 and parts[1] in _PREPOSITIONS:
            return singularize(parts[0]) + "-" + "-".join(parts[1:])
    if word.endswith("'"):
        return singularize(word[:-1]) + "'s"
    w = word.lower()
    if any(x.endswith(w) for x in _UNINFLECTED) or any(x.endswith(w) for x in _UNCOUNTABLE):
        return word
    if any(w.endswith(x + "s") for x in _IE):
        return w
    for plural, single in _IRREGULAR.items():
        if w.endswith(plural):
            return re.sub("(?i)" + plural + "$", single, word)
    for pattern, repl in _RULES:
        m = pattern.search(word)
        if m:
            for k, g in enumerate(m.groups()):
                if g is None:
                    repl = repl.replace("\\" + str(k + 1), "")
            return pattern.sub(repl, word)
    return word


# ------------------------------------------------------------- tokenization
_ABBREVIATIONS = set(
    "mr mrs ms dr st jr sr vs etc e.g i.e u.s a.m p.m inc co ltd no approx fig".split()
)
_CLOSERS = "\"')]}\u201d\u2019\u00bb"
_OPENERS = "\"'([{\u201c\u2018\u00ab"


def _ends_sentence(chunk):
    core = chunk.rstrip(_CLOSERS)
    if not core:
        return False
    if core[-1] in "?!":
        return True
    if core[-1] != ".":
        return False
    word = core[:-1]
    bare = word.lstrip(_OPENERS)
    single_letter = len(bare) == 1 and bare.isalpha()
    return not (word.endswith(".") or bare in _ABBREVIATIONS or single_letter)


def sentences(text):
    """Punkt approximation (same rule as reward-core metrics::nltk::sentences)."""
    spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    out, start = [], 0
    for i, (s, e) in enumerate(spans):
        if i + 1 < len(spans) and _ends_sentence(text[s:e]):
            out.append(text[start:e])
            start = spans[i + 1][0]
    if text[start:].strip():
        out.append(text[start:])
    return out


def tokenize(text):
    return [t for s in sentences(text) for t in word_tokenize(s, preserve_line=True)]


# -------------------------------------------------------------------- CHAIR
class Chair:
    def __init__(self):
        self.synonyms = {}  # verbatim word -> node word
        self.coco = []
        with open(os.path.join(DATA, "chair_synonyms.tsv"), encoding="utf-8") as f:
            next(f)
            for line in f:
                _, node, _, words = line.rstrip("\n").split("\t")
                self.coco.append(node)
                for w in words.split("|"):
                    self.synonyms[w] = node
        self.double = {}
        with open(os.path.join(DATA, "chair_double_words.tsv"), encoding="utf-8") as f:
            next(f)
            for line in f:
                cols = line.rstrip("\n").split("\t")
                self.double[cols[0]] = cols[1]

    def merged(self, caption):
        words = [singularize(w) for w in tokenize(caption.lower())]
        out, i = [], 0
        while i < len(words):
            pair = " ".join(words[i : i + 2])
            if pair in self.double:
                out.append(self.double[pair])
                i += 2
            else:
                out.append(words[i])
                i += 1
        if "toilet" in out and "seat" in out:
            out = [w for w in out if w != "seat"]
        return out

    def mentions(self, caption):
        return [(w, self.synonyms[w]) for w in self.merged(caption) if w in self.synonyms]

    def ground_truth(self, ann_dir):
        gt = {}
        for path in sorted(glob.glob(os.path.join(ann_dir, "instances_*.json"))):
            doc = json.load(open(path, encoding="utf-8"))
            for img in doc.get("images", []):
                gt.setdefault(img["id"], set())
            names = {c["id"]: c["name"] for c in doc["categories"]}
            for a in doc["annotations"]:
                gt.setdefault(a["image_id"], set()).add(self.synonyms[names[a["category_id"]]])
        for path in sorted(glob.glob(os.path.join(ann_dir, "captions_*.json"))):
            doc = json.load(open(path, encoding="utf-8"))
            for img in doc.get("images", []):
                gt.setdefault(img["id"], set())
            for a in doc["annotations"]:
                objs = gt.setdefault(a["image_id"], set())
                objs.update(node for _, node in self.mentions(a["caption"]))
        return gt

    def evaluate(self, captions, gt):
        per, n_men, n_hal, n_s = [], 0, 0, 0
        correct = truth = 0
        for cap in captions:
            objs = gt[cap["image_id"]]
            ments = self.mentions(cap["caption"])
            hal = [node for _, node in ments if node not in objs]
            n_men += len(ments)
            n_hal += len(hal)
            n_s += bool(hal)
            distinct = {node for _, node in ments}
            correct += len(distinct & objs)
            truth += len(objs)
            per.append(
                {
                    "image_id": cap["image_id"],
                    "merged": self.merged(cap["caption"]),
                    "words": [w for w, _ in ments],
                    "objects": [n for _, n in ments],
                    "hallucinated": sorted(set(hal)),
                    "ground_truth": sorted(objs),
                }
            )
        return {
            "chair_s": n_s / len(captions),
            "chair_i": n_hal / n_men if n_men else 0.0,
            "recall": correct / truth if truth else 0.0,
            "n_mentions": n_men,
            "n_hallucinated": n_hal,
            "captions": per,
        }


def load_captions(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]


def check_vectors():
    path = os.path.join(DATA, "chair_singularize_vectors.tsv")
    rows = [l.rstrip("\n").split("\t") for l in open(path, encoding="utf-8")][1:]
    bad = [(w, want, singularize(w)) for w, want, *_ in rows if singularize(w) != want]
    print(json.dumps({"vectors": len(rows), "disagree": bad}))
    return 1 if bad else 0


def main(argv):
    if argv[1] == "check-vectors":
        return check_vectors()
    if argv[1] == "tokens":
        for line in open(argv[2], encoding="utf-8"):
            s = line.rstrip("\n")
            print(json.dumps({"text": s, "sentence": word_tokenize(s, preserve_line=True),
                              "sentences": sentences(s), "tokens": tokenize(s)}))
        return 0
    chair = Chair()
    caps = load_captions(argv[2])
    if argv[1] == "eval":
        print(json.dumps(chair.evaluate(caps, chair.ground_truth(argv[3])), indent=1))
        return 0
    if argv[1] == "bench":
        gt = chair.ground_truth(argv[3])
        repeats = int(argv[4])
        t0 = time.perf_counter()
        for _ in range(repeats):
            report = chair.evaluate(caps, gt)
        dt = (time.perf_counter() - t0) / repeats
        print(json.dumps({"seconds_per_run": dt, "captions": len(caps), "chair_i": report["chair_i"]}))
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
