"""Prompt sets (pytest_slm.measure.prompts): sources, identity, distinctness, exact-length synthetic prompts."""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path

import pytest

from pytest_slm.measure import prompts as P


class MergingTokenizer:
    """A tiny greedy longest-match tokenizer whose decode → encode round trip is NOT the identity:
    pieces without a leading space merge with their neighbours (" a" + "b" re-encodes as " ab"),
    which is what makes exact-length prompts need adjusting with real BPE tokenizers too."""

    def __init__(self, bos: bool = True) -> None:
        letters = "abcdefgh"
        pieces = ["<s>", "\n", " "]
        pieces += [f" {c}" for c in letters] + list(letters)
        pieces += [f" {a}{b}" for a in letters for b in letters] + [f"{a}{b}" for a in letters for b in letters]
        self.pieces = pieces
        self.ids = {p: i for i, p in enumerate(pieces)}
        self.bos = bos
        self.all_special_ids = [0]
        self.vocab_size = len(pieces)

    def __len__(self) -> int:
        return len(self.pieces)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        out = [0] if (add_special_tokens and self.bos) else []
        i = 0
        while i < len(text):
            for width in (3, 2, 1):
                piece = text[i : i + width]
                if len(piece) == width and piece in self.ids:
                    out.append(self.ids[piece])
                    i += width
                    break
            else:
                raise ValueError(f"cannot encode {text[i]!r}")
        return out

    def decode(self, ids: list[int]) -> str:
        return "".join(self.pieces[i] for i in ids if i != 0)


def test_fixed_is_the_single_prompt_repeated() -> None:
    ps = P.load_prompt_set("fixed", default_prompt="Hello there.")
    assert ps.prompts == ("Hello there.",)
    assert ps.take(3) == ["Hello there."] * 3  # the fixed source repeats by definition
    assert ps.identity["prompt_source"] == "fixed"
    assert ps.usage(3) == {"prompt_requests": 3, "prompt_distinct": 1, "prompt_cycled": True}


def test_fixed_defaults_to_the_settings_prompt() -> None:
    from pytest_slm.options import DEFAULT_PROMPT

    assert P.load_prompt_set("fixed").prompts == (DEFAULT_PROMPT,)


def test_shipped_set_is_about_a_hundred_distinct_varied_prompts() -> None:
    ps = P.load_prompt_set("shipped")
    assert 95 <= len(ps) <= 150
    assert len(set(ps.prompts)) == len(ps), "shipped prompts must be distinct"
    lengths = [len(p.split()) for p in ps.prompts]
    assert min(lengths) < 15 and max(lengths) > 100, "lengths should vary from a line to a paragraph"
    assert all(n is None for n in ps.max_new_tokens)
    assert ps.take(8) == list(ps.prompts[:8]) and len(set(ps.take(8))) == 8
    # every row has an id and a kind
    raw = (Path(P.__file__).parent.parent / "data" / "prompts" / "shipped.jsonl").read_text().splitlines()
    rows = [json.loads(r) for r in raw]
    assert len({r["id"] for r in rows}) == len(rows)
    assert {r["kind"] for r in rows} >= {"question", "instruction", "summarization", "code"}


def test_identity_is_flat_json_scalars_and_keyed_on_content(tmp_path: Path) -> None:
    a = P.load_prompt_set("shipped").identity
    assert all(isinstance(v, str | int | float | bool) or v is None for v in a.values())
    assert a["prompt_count"] == len(P.load_prompt_set("shipped"))
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "one"}\n{"prompt": "two", "max_new_tokens": 5}\n')
    one = P.load_prompt_set(f"jsonl:{f}").identity
    f.write_text('{"prompt": "one"}\n{"prompt": "two", "max_new_tokens": 6}\n')
    two = P.load_prompt_set(f"jsonl:{f}").identity
    assert one["prompt_set_sha256"] != two["prompt_set_sha256"]
    json.dumps(dict(one))


def test_take_past_the_end_is_an_error_unless_cycling_is_asked_for(tmp_path: Path) -> None:
    f = tmp_path / "p.jsonl"
    f.write_text("\n".join(json.dumps({"prompt": f"prompt {i}"}) for i in range(3)))
    ps = P.load_prompt_set(f"jsonl:{f}")
    assert ps.take(2, offset=1) == ["prompt 1", "prompt 2"]
    with pytest.raises(P.PromptSetError, match="holds 3 prompts, 4 were asked for"):
        ps.take(4)
    cyc = P.load_prompt_set(f"jsonl:{f}", cycle=True)
    assert cyc.take(5) == ["prompt 0", "prompt 1", "prompt 2", "prompt 0", "prompt 1"]
    assert cyc.usage(5) == {"prompt_requests": 5, "prompt_distinct": 3, "prompt_cycled": True}
    assert cyc.identity["prompt_cycle"] is True and ps.identity["prompt_cycle"] is False


def test_jsonl_per_prompt_output_lengths(tmp_path: Path) -> None:
    f = tmp_path / "p.jsonl"
    f.write_text('{"id": "a", "prompt": "x", "max_new_tokens": 7}\n\n{"id": "b", "prompt": "y"}\n')
    ps = P.load_prompt_set(f"jsonl:{f}")
    assert ps.max_new_tokens == (7, None)
    assert ps.take_max_new_tokens(2) == [7, None]
    assert ps.identity["prompt_source"] == "jsonl"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json\n", "line 1: not JSON"),
        ('{"text": "x"}\n', 'line 1: expected an object with a non-empty "prompt"'),
        ('{"prompt": "x"}\n{"prompt": "y", "max_new_tokens": 0}\n', "line 2: max_new_tokens must be a positive"),
        ('{"id": 1, "prompt": "x"}\n{"id": 1, "prompt": "y"}\n', "line 2: duplicate id"),
        ("\n\n", "no prompts"),
    ],
)
def test_bad_jsonl_names_the_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text(content)
    with pytest.raises(P.PromptSetError, match=message) as info:
        P.load_prompt_set(f"jsonl:{f}")
    assert str(f) in str(info.value)


def test_missing_jsonl_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(P.PromptSetError, match="cannot read"):
        P.load_prompt_set(f"jsonl:{tmp_path / 'nope.jsonl'}")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("bogus", "unknown prompt set 'bogus'; valid: fixed, shipped"),
        ("synthetic:out=4", "in=N is required"),
        ("synthetic:in=4,out=4,dist=zipf", "dist must be one of fixed, uniform, normal"),
        ("synthetic:in=4,out=x", "out must be an integer"),
        ("synthetic:in=4,out=4,colour=red", "bad entry 'colour=red'"),
        ("synthetic:in=4,out=4,range=2", r"range must be in \[0, 1.0\]"),
        ("synthetic:in=0,out=4", "in must be >= 1"),
    ],
)
def test_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(P.PromptSetError, match=message):
        P.load_prompt_set(spec, tokenizer=MergingTokenizer())


def test_synthetic_needs_a_tokenizer() -> None:
    with pytest.raises(P.PromptSetError, match="needs the model's tokenizer"):
        P.load_prompt_set("synthetic:in=8,out=4")


@pytest.mark.parametrize("bos", [True, False])
def test_exact_length_prompt_survives_merging_round_trips(bos: bool) -> None:
    tok = MergingTokenizer(bos=bos)
    vocab = P.word_vocabulary(tok)
    rng = random.Random(1)
    merged_at_least_once = False
    for n in (2, 3, 7, 31, 64, 200):
        ids = [rng.choice(vocab) for _ in range(n)]
        merged_at_least_once |= len(tok.encode(tok.decode(ids), add_special_tokens=False)) != n
        text = P.exact_length_prompt(tok, n, rng, vocab)
        assert len(tok.encode(text)) == n
    assert merged_at_least_once, "the fake tokenizer should exercise the adjustment loop"


def test_too_short_for_the_special_tokens() -> None:
    with pytest.raises(P.PromptSetError, match="adds 1 special token"):
        P.exact_length_prompt(MergingTokenizer(bos=True), 1, random.Random(0), [1, 2])


def test_synthetic_fixed_lengths_are_exact_distinct_and_seeded() -> None:
    tok = MergingTokenizer()
    ps = P.load_prompt_set("synthetic:in=40,out=12,n=20", tokenizer=tok, seed=3)
    assert len(ps) == 20 and len(set(ps.prompts)) == 20
    assert [len(tok.encode(p)) for p in ps.prompts] == [40] * 20 == list(ps.prompt_tokens)
    assert ps.max_new_tokens == (12,) * 20
    again = P.load_prompt_set("synthetic:in=40,out=12,n=20", tokenizer=tok, seed=3)
    assert again.prompts == ps.prompts and again.identity == ps.identity
    other = P.load_prompt_set("synthetic:in=40,out=12,n=20", tokenizer=tok, seed=4)
    assert other.prompts != ps.prompts
    assert other.identity["prompt_set_sha256"] != ps.identity["prompt_set_sha256"]
    # the spec's own seed wins over the caller's
    assert P.load_prompt_set("synthetic:in=40,out=12,n=20,seed=3", tokenizer=tok, seed=9).prompts == ps.prompts
    # a larger set starts with the smaller one
    assert P.load_prompt_set("synthetic:in=40,out=12,n=25", tokenizer=tok, seed=3).prompts[:20] == ps.prompts
    ident = ps.identity
    assert (ident["prompt_source"], ident["prompt_in"], ident["prompt_out"], ident["prompt_in_dist"]) == (
        "synthetic",
        40,
        12,
        "fixed",
    )
    assert ident["prompt_count"] == 20 and ident["prompt_seed"] == 3


def test_synthetic_uniform_and_normal_laws() -> None:
    tok = MergingTokenizer()
    uni = P.load_prompt_set("synthetic:in=50,out=20,dist=uniform,range=0.4,n=200", tokenizer=tok)
    ins = [len(tok.encode(p)) for p in uni.prompts]
    assert ins == list(uni.prompt_tokens)
    assert min(ins) >= 30 and max(ins) <= 70 and len(set(ins)) > 20
    outs = [n for n in uni.max_new_tokens if n is not None]
    assert min(outs) >= 12 and max(outs) <= 28
    assert abs(statistics.fmean(ins) - 50) < 3
    norm = P.load_prompt_set("synthetic:in=100,out=30,in_dist=normal,std=0.2,n=200", tokenizer=tok)
    ins = list(norm.prompt_tokens)
    assert abs(statistics.fmean(ins) - 100) < 5 and 12 < statistics.stdev(ins) < 28
    assert set(norm.max_new_tokens) == {30}  # out stays fixed
    assert norm.identity["prompt_in_dist"] == "normal" and norm.identity["prompt_std"] == 0.2
    assert norm.identity["prompt_range"] is None


def test_draw_length_is_at_least_one() -> None:
    rng = random.Random(0)
    assert min(P.draw_length(rng, 2, "normal", 0.5, 5.0) for _ in range(500)) == 1


def test_shared_prefix() -> None:
    tok = MergingTokenizer()
    base = P.load_prompt_set("synthetic:in=20,out=4,n=5", tokenizer=tok)
    shared = P.with_shared_prefix(base, 16, tok)
    heads = {p.split("\n\n")[0] for p in shared.prompts}
    assert len(heads) == 1 and len(tok.encode(heads.pop(), add_special_tokens=False)) == 16
    assert len(set(shared.prompts)) == 5
    assert shared.identity["prompt_shared_prefix_tokens"] == 16
    assert shared.identity["prompt_set_sha256"] != base.identity["prompt_set_sha256"]
    assert P.with_shared_prefix(base, 0, tok) is base
