"""Tiny offline Llama + LoRA adapter, served by a real `transformers serve` subprocess (OpenAI-compatible API)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {{ eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIALS = ["<unk>", "<pad>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]
CORPUS = [
    "What is the refund policy for annual plans? Refunds are prorated within thirty days.",
    "Retrieval augmented generation answers questions from the document store, please.",
    "The fine-tuned adapter knows the product, its pricing and its support hours.",
]
_SNAPSHOT = "0" * 40  # fake commit hash in the server's private Hugging Face cache


def _build_tokenizer() -> Any:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))  # whole words, so generated text stays readable
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(CORPUS, trainer=trainers.WordLevelTrainer(special_tokens=SPECIALS))
    names = {"unk_token": "<unk>", "pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>"}
    return PreTrainedTokenizerFast(tokenizer_object=tok, chat_template=CHAT_TEMPLATE, **names)  # type: ignore[no-untyped-call]


def build_tiny_llama(dest: Path) -> tuple[Path, Path]:
    """Write a tiny random Llama + tokenizer to dest/base and a random LoRA (r=4, q/v_proj) to dest/adapter.

    `transformers serve` calls AutoConfig on the model dir first, so a bare PEFT adapter dir fails there
    ("Unrecognized model ... Should have a `model_type` key in its config.json"). The adapter dir therefore also
    carries copies of the base files: `from_pretrained(adapter_dir)` loads that base and applies the LoRA via PEFT.
    `adapter_config.json` still names dest/base, so `PeftModel.from_pretrained(base, adapter_dir)` works as well.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    base_dir, adapter_dir = dest / "base", dest / "adapter"
    tokenizer = _build_tokenizer()
    unk, pad, bos, eos, *roles = tokenizer.convert_tokens_to_ids(SPECIALS)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        pad_token_id=pad,
        bos_token_id=bos,
        eos_token_id=eos,
    )
    torch.manual_seed(0)
    with warnings.catch_warnings():  # transformers/peft deprecation warnings; the test suite runs with -W error
        warnings.simplefilter("ignore")
        model = LlamaForCausalLM(config)
        # Greedy; no special tokens and no EOS as first token, so every completion is non-empty readable words.
        model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
            bos_token_id=bos, eos_token_id=eos, pad_token_id=pad, do_sample=False,
            suppress_tokens=[unk, pad, bos, *roles], begin_suppress_tokens=[eos],
        )  # fmt: skip
        model.save_pretrained(base_dir)
        tokenizer.save_pretrained(base_dir)
        lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
        peft_model = get_peft_model(model, lora)
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_B" in name:  # B starts at zero, which would make the adapter a no-op
                    param.normal_(0.0, 0.5)
        peft_model.peft_config["default"].base_model_name_or_path = str(base_dir)
        peft_model.save_pretrained(str(adapter_dir))
    for path in base_dir.iterdir():  # config.json, generation config, base weights, tokenizer, chat template
        shutil.copy2(path, adapter_dir / path.name)
    return base_dir, adapter_dir


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(proc: subprocess.Popen[bytes], root: str, names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=root, timeout=timeout) as client:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"transformers serve exited with code {proc.returncode}")
            try:
                if client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"transformers serve did not answer on {root} within {timeout}s")
            time.sleep(0.2)
        for name in names:  # POST /load_model streams SSE progress events ending in status "ready" or "error"
            lines = client.post("/load_model", json={"model": name}).text.splitlines()
            events = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
            if not events or events[-1].get("status") != "ready":
                raise RuntimeError(f"transformers serve could not load {name!r}: {events[-1:]}")


@contextmanager
def transformers_server(models: Mapping[str, Path], port: int | None = None, timeout: float = 120.0) -> Iterator[str]:
    """Run `transformers serve` on 127.0.0.1 and yield its base URL, "http://127.0.0.1:PORT/v1".

    Each `models` entry (served name -> model dir) is copied into a private offline HF cache, so that name is the
    `model` string to send and what GET /v1/models lists. All models are preloaded before the URL is yielded.
    """
    port = port or _free_port()
    with tempfile.TemporaryDirectory(prefix="tiny-llm-serve-") as tmp:
        for name, src in models.items():
            repo = Path(tmp) / "hub" / f"models--{name.replace('/', '--')}"
            shutil.copytree(src, repo / "snapshots" / _SNAPSHOT)
            (repo / "refs").mkdir()
            (repo / "refs" / "main").write_text(_SNAPSHOT)
        env = os.environ | {"HF_HOME": tmp, "HF_HUB_CACHE": f"{tmp}/hub", "HF_HUB_OFFLINE": "1"}
        env |= {"TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
        cmd = [sys.executable, "-m", "transformers.cli.transformers", "serve", "--host", "127.0.0.1"]
        cmd += ["--port", str(port), "--device", "cpu", "--dtype", "float32"]
        log_path = Path(tmp) / "serve.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        failed = True
        try:
            _wait_ready(proc, f"http://127.0.0.1:{port}", list(models), timeout)
            yield f"http://127.0.0.1:{port}/v1"
            failed = False
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            if failed:
                print(f"---- {' '.join(cmd)} (exit {proc.returncode}) ----\n{log_path.read_text(errors='replace')}")
