from transformers import AutoTokenizer

from supporttune.prompting.spec import PromptSpec
from supporttune.prompting.builder import encode_example, encode_prompt, prompt_text

EX = {"input": "Where is my parcel?", "output": "Please DM us your order number.", "brand": "ParcelPal",
      "sentiment": "negative", "priority": "high", "category": "question"}


def test_chat_prompt_carries_brand_and_tags(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = prompt_text(tok, EX, PromptSpec(prompt_format="chat", tags=True))
    assert "for ParcelPal" in text and "[PRIORITY: HIGH] [SENTIMENT: NEGATIVE]" in text
    assert text.endswith("<|im_start|>assistant\n") and "Where is my parcel?" in text
    assert "[PRIORITY" not in prompt_text(tok, EX, PromptSpec(prompt_format="chat", tags=False))


def test_plain_prompt_is_the_seed_format(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = prompt_text(tok, EX, PromptSpec(prompt_format="plain", tags=True))
    assert text.endswith("Customer message: Where is my parcel?\nAgent response:")
    assert text.startswith("[PRIORITY: HIGH] [SENTIMENT: NEGATIVE]")


def test_completion_only_masking_and_eos(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    for fmt in ("chat", "plain"):
        spec = PromptSpec(prompt_format=fmt, tags=True)
        enc = encode_example(tok, EX, spec, 512)
        prompt = encode_prompt(tok, EX, spec)
        n = len(prompt)
        assert enc["input_ids"][:n] == prompt  # train/inference parity: same ids before the reply
        assert all(x == -100 for x in enc["labels"][:n])
        assert enc["labels"][n:] == enc["input_ids"][n:] and -100 not in enc["labels"][n:]
        assert enc["labels"][-1] == tok.eos_token_id
        assert tok.decode(enc["input_ids"][n:-1]).strip() == EX["output"]


def test_too_long_examples_are_skipped(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert encode_example(tok, EX, PromptSpec(prompt_format="chat", tags=True), 16) is None
