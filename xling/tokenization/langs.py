"""The language-code type: one strict pattern, checked wherever a user string names a language.

A language code is ISO 639 letters (two, or three for languages without a two-letter code),
optionally followed by a script and/or a region: ``de``, ``yue``, ``zh_Hans``, ``pt_BR``,
``es_419``, ``sr_Cyrl_RS``. Nothing else is a code, so a code can never hold a path separator,
a dot or a dash: corpus file names (``train.de``, ``train.de-en.de``), model records and
pair names (``de-en``) built from validated codes cannot escape their directory.

    check_lang("de", "--lang")        # "de"; "../evil" -> XlingError naming --lang
    check_pair("de-en", "--lang")     # ("de", "en")
    split_codes("en, de", "--langs")  # ["en", "de"], each checked
    check_known_lang("xx", "--lang")  # also requires a code xling knows (ISO 639-1 or the list below)

Every entry point validates: CLI arguments, config files, corpus manifests and model records.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated

from xling.errors import XlingError

LANG_PATTERN = re.compile(r"[a-z]{2,3}(?:_[A-Z][a-z]{3})?(?:_(?:[A-Z]{2}|[0-9]{3}))?")
_EXPECTED = "expected ISO 639 letters like de, fr or yue, optionally _Script/_REGION as in zh_Hans or pt_BR"

# ISO 639-1: every two-letter language code.
ISO_639_1 = frozenset("""
aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy da de
dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz ia id
ie ig ii ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln lo lt lu
lv mg mh mi mk ml mn mr ms mt my na nb nd ne ng nl nn no nr nv ny oc oj om or os pa pi pl ps pt qu
rm rn ro ru rw sa sc sd se sg si sk sl sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to tr
ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi yo za zh zu
""".split())

# Three-letter codes (ISO 639-2/3) of languages without a two-letter code that multilingual
# corpora and benchmarks use (FLORES-200, NLLB, Tatoeba, XTREME); codes outside both lists
# still pass check_lang, and check_known_lang names them.
ISO_639_3_EXTRA = frozenset("""
ace acm acq aeb ajp als apc ars ary arz ast awa azb azj bal ban bem bho bjn bug cat ceb cjk ckb
cmn crh dik dyu dzo epo est fao fil fon fur fuv gaz gla gle glg grn gsw hat hau haw hbs hne hye
ibo ilo jpn kab kac kam kas kbp kea khk khm kik kin kir kmb kmr knc kon kor lao lij lim lin lit
lmo ltg ltz lua lug luo lus lvs mag mai mal mar min mkd mlt mni mos mri mya nan nds nno nob npi
nso nus nya oci ory pag pan pap pbt pes plt pol por prs quy ron run rus sag san sat scn shn sin
slk slv smo sna snd som sot spa srd srp ssw sun swe swh szl tam taq tat tel tgk tgl tha tir tpi
tsn tso tuk tum tur twi tzm uig ukr umb urd uzn vec vie war wol xho ydd yor yue zgh zho zsm zul
""".split())


def _at(where: str) -> str:
    return f"{where}: " if where else ""


def is_lang(code: object) -> bool:
    """Whether ``code`` is a string of the language-code pattern."""
    return isinstance(code, str) and LANG_PATTERN.fullmatch(code) is not None


def check_lang(code: object, where: str = "language") -> str:
    """``code`` if it is a language code; else an XlingError naming ``where`` and the value."""
    if not is_lang(code):
        shown = repr(code) if isinstance(code, str) else f"{code!r} ({type(code).__name__})"
        raise XlingError(f"{_at(where)}{shown} is not a language code ({_EXPECTED})")
    return code  # type: ignore[return-value]


def check_langs(codes: Iterable[object], where: str = "languages") -> list[str]:
    """Every item of ``codes`` checked (a list of codes, in order)."""
    if isinstance(codes, str):
        raise XlingError(f"{where}: expected a list of language codes, got the string {codes!r}")
    return [check_lang(c, where) for c in codes]


def split_codes(text: str, where: str = "--langs") -> list[str]:
    """``"en, de"`` -> ``["en", "de"]``, each checked; an empty list is an error."""
    items = [c.strip() for c in text.split(",") if c.strip()]
    if not items:
        raise XlingError(f"{_at(where)}{text!r}: no language codes")
    return [check_lang(c, where) for c in items]


def check_pair(name: object, where: str = "language pair") -> tuple[str, str]:
    """``"de-en"`` -> ``("de", "en")``: two different checked codes, in the order given."""
    parts = name.split("-") if isinstance(name, str) else []
    if len(parts) != 2:
        raise XlingError(f"{_at(where)}{name!r} is not a language pair like de-en")
    a, b = (check_lang(p, where) for p in parts)
    if a == b:
        raise XlingError(f"{_at(where)}{name!r}: the two languages must differ")
    return a, b


def check_cycle(name: object, where: str = "direction") -> tuple[str, str, str]:
    """``"en-de-en"`` (XLM's back-translation direction: en translated to de, trained back to en)
    -> ``("en", "de", "en")``: two different checked codes, the first repeated at the end."""
    parts = name.split("-") if isinstance(name, str) else []
    if len(parts) != 3 or parts[0] != parts[2]:
        raise XlingError(f"{_at(where)}{name!r} is not a back-translation direction like en-de-en")
    a, b = check_pair(f"{parts[0]}-{parts[1]}", where)
    return a, b, a


def check_lang_or_pair(name: object, where: str = "language") -> tuple[str, ...]:
    """A code (``de``), a pair (``de-en``) or a back-translation cycle (``en-de-en``), as a tuple of
    one, two or three checked codes."""
    if isinstance(name, str) and name.count("-") == 2:
        return check_cycle(name, where)
    if isinstance(name, str) and "-" in name:
        return check_pair(name, where)
    return (check_lang(name, where),)


def is_known_lang(code: str) -> bool:
    """Whether the base of ``code`` is ISO 639-1 or one of :data:`ISO_639_3_EXTRA`."""
    base = code.split("_", 1)[0]
    return base in ISO_639_1 or base in ISO_639_3_EXTRA


def check_known_lang(code: object, where: str = "language") -> str:
    """:func:`check_lang`, and the base code must be one xling knows (for tools that pick
    behaviour by language and record it in signatures, e.g. BLEU tokenizers)."""
    check_lang(code, where)
    if not is_known_lang(code):  # type: ignore[arg-type]
        raise XlingError(f"{_at(where)}unknown language code {code!r} (not ISO 639-1, nor a known ISO 639-3 code)")
    return code  # type: ignore[return-value]


# Config field types: ``langs: list[Lang]`` is checked when a YAML config is loaded.
Lang = Annotated[str, check_lang]
LangOrPair = Annotated[str, check_lang_or_pair]
