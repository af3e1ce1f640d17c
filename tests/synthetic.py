"""A synthetic language and its word-substitution cipher, shared by the tests of methods that must
learn a translation without parallel data (word-by-word dictionaries, unsupervised MT).

:class:`Grammar` makes English-like sentences whose words differ by their contexts, not only their
frequency; :func:`cipher_corpus` enciphers a disjoint set of them word by word (names, numbers and
punctuation stay as they are: the anchors real language pairs share), and keeps held-out sentences
in both forms for scoring.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUMBERS = [str(n) for n in range(2, 40)]


def _lexicon(rng, n, taken):
    """``n`` new pronounceable lowercase words not in ``taken``."""
    cons, vowels = "bdfgklmnprstvz", "aeiou"
    words = []
    while len(words) < n:
        word = "".join(rng.choice(list(cons)) + rng.choice(list(vowels)) for _ in range(rng.integers(1, 4)))
        if word not in taken:
            taken.add(word)
            words.append(word)
    return words


def _zipf(n, rng, exponent=1.0):
    p = 1 / np.arange(1, n + 1) ** exponent
    return rng.permutation(p / p.sum())


class Grammar:
    """English-like sentences: Zipfian words with dependencies (each name prefers some verbs, each
    verb some objects, each noun some adjectives and determiners, each preposition some nouns, each
    conjunction a kind of subject): function words differ by their contexts, not only their frequency."""

    def __init__(self, rng, sizes=(150, 60, 40, 25)):
        taken = set()
        n_noun, n_verb, n_adj, n_name = sizes
        self.nouns, self.verbs, self.adjs = (_lexicon(rng, n, taken) for n in (n_noun, n_verb, n_adj))
        self.names = [w.capitalize() for w in _lexicon(rng, n_name, taken)]
        self.dets, self.preps, self.conjs = _lexicon(rng, 4, taken), _lexicon(rng, 8, taken), _lexicon(rng, 2, taken)
        self.function = self.dets + self.preps + self.conjs
        self.p_noun, self.p_verb = _zipf(n_noun, rng), _zipf(n_verb, rng)

        def prefs(n_from, n_to, k):  # each item prefers k others, Zipfian among them
            return [(rng.choice(n_to, k, replace=False), _zipf(k, rng)) for _ in range(n_from)]

        self.name_verbs, self.verb_objs = prefs(n_name, n_verb, 6), prefs(n_verb, n_noun, 10)
        self.noun_adjs, self.prep_nouns = prefs(n_noun, n_adj, 4), prefs(len(self.preps), n_noun, 12)
        self.noun_dets = prefs(n_noun, len(self.dets), 2)

    def _pick(self, rng, pref):
        ids, p = pref
        return ids[rng.choice(len(ids), p=p)]

    def _np(self, rng, noun):
        det = [str(rng.choice(NUMBERS))] if rng.random() < 0.2 else [self.dets[self._pick(rng, self.noun_dets[noun])]]
        adj = [self.adjs[self._pick(rng, self.noun_adjs[noun])]] if rng.random() < 0.4 else []
        return det + adj + [self.nouns[noun]]

    def _clause(self, rng, p_name=0.5):
        if rng.random() < p_name:
            name = rng.integers(len(self.names))
            subj, verb = [self.names[name]], self._pick(rng, self.name_verbs[name])
        else:
            subj, verb = self._np(rng, rng.choice(len(self.nouns), p=self.p_noun)), rng.choice(len(self.verbs), p=self.p_verb)
        words = subj + [self.verbs[verb]] + self._np(rng, self._pick(rng, self.verb_objs[verb]))
        if rng.random() < 0.5:
            prep = rng.integers(len(self.preps))
            words += [self.preps[prep]] + self._np(rng, self._pick(rng, self.prep_nouns[prep]))
        return words

    def sentence(self, rng):
        """A sentence as tokens; punctuation tokens are separate."""
        words = self._clause(rng)
        if rng.random() < 0.3:
            conj = rng.integers(2)
            words += [",", self.conjs[conj]] + self._clause(rng, p_name=0.8 if conj else 0.2)
        return words + [rng.choice([".", ".", ".", "!", "?"])]


def text(tokens):
    """Tokens as a sentence: first letter capitalised, no space before punctuation."""
    line = " ".join(tokens).replace(" ,", ",").replace(" .", ".").replace(" !", "!").replace(" ?", "?")
    return line[:1].upper() + line[1:]


@dataclass
class CipherCorpus:
    grammar: Grammar
    cipher: dict  # plain word -> cipher word (names, numbers and punctuation are not in it)
    plain_side: list  # monolingual plain sentences (text)
    cipher_side: list  # monolingual enciphered sentences, from sentences disjoint from plain_side
    held_plain: list  # held-out sentences, plain ...
    held_cipher: list  # ... and enciphered (the source of a cipher -> plain translation test)

    @property
    def truth(self) -> dict:
        """cipher word -> plain word (the anchors left out)."""
        return {c: p for p, c in self.cipher.items()}


def cipher_corpus(rng, n_plain: int, n_cipher: int, n_held: int, sizes=(150, 60, 40, 25)) -> CipherCorpus:
    """Sentences of one :class:`Grammar`: ``n_plain`` plain, ``n_cipher`` others enciphered, ``n_held`` held out."""
    g = Grammar(rng, sizes)
    plain = g.nouns + g.verbs + g.adjs + g.function
    secret = _lexicon(rng, len(plain), set(plain) | {n.lower() for n in g.names})
    cipher = dict(zip(plain, rng.permutation(secret)))  # names, numbers and punctuation stay as they are
    sentences = [g.sentence(rng) for _ in range(n_plain + n_cipher + n_held)]
    enc = lambda tokens: text([cipher.get(t, t) for t in tokens])  # noqa: E731
    plain_side, cipher_side = sentences[:n_plain], sentences[n_plain:n_plain + n_cipher]
    held = sentences[n_plain + n_cipher:]
    return CipherCorpus(g, cipher, [text(s) for s in plain_side], [enc(s) for s in cipher_side],
                        [text(s) for s in held], [enc(s) for s in held])
