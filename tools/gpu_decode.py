"""Issue 21's decoding experiment on a GPU: train the recipe, then write every candidate reply to disk.

For each seed it trains the `full` preset's recipe (its lora-all variant) on the prepared TWCS sample, then,
for the val and test splits, generates with the trained agent: the greedy reply (the eager path, what
evaluate scores), beam search, and N sampled replies per message at several temperatures (top-p
fixed), timing each. Nothing is selected or scored here: tools/decode_results.py does MBR selection and
scoring on the CPU with the project's own metrics, so the GPU only generates.

    source tools/device_setup.sh && python tools/gpu_decode.py --data .dev/twcs --out $OUT --seeds 1,2,3
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import yaml


def recipe(data: Path, out: Path, seed: int, device: str = "cuda", max_steps: int | None = None):
    from supporttune.train.config import TrainConfig

    doc = yaml.safe_load((Path(__file__).resolve().parents[1] / "src/supporttune/configs/default.yaml").read_text())
    variant = next(v for v in doc["variants"] if v["name"].startswith("lora-all"))  # the recipe
    return TrainConfig(**{**doc["defaults"], **variant, "data": data, "out": out, "seed": seed, "force": True,
                          "device": device, "max_steps": max_steps})


def _batches(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


@torch.inference_mode()
def sample(agent, prompts: list[list[int]], n: int, temperature: float, top_p: float, beams: int = 1,
           batch: int = 64, max_new: int = 64) -> tuple[list[list[str]], float]:
    """n replies per prompt (sampled, or the beam result when beams > 1) and the seconds it took."""
    from supporttune.inference.decode import finish, pad_left

    tok, model = agent.tokenizer, agent.model
    out: list[list[str]] = []
    _sync()
    t0 = time.perf_counter()
    for chunk in _batches(prompts, max(1, batch // max(n, beams))):
        ids, mask = pad_left(chunk, tok.pad_token_id)
        kwargs = dict(max_new_tokens=max_new, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        if beams > 1:
            kwargs.update(do_sample=False, num_beams=beams, num_return_sequences=1, early_stopping=True)
        else:
            kwargs.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=0, num_return_sequences=n)
        gen = model.generate(input_ids=ids.to(agent.device), attention_mask=mask.to(agent.device), **kwargs)
        rows = gen[:, ids.shape[1]:].tolist()
        texts = [g.text for g in finish(tok, rows, max_new, None)]
        k = 1 if beams > 1 else n
        out += [texts[i * k:(i + 1) * k] for i in range(len(chunk))]
    _sync()
    return out, time.perf_counter() - t0


def _finished(run: Path) -> bool:
    from supporttune.core.errors import UserError
    from supporttune.rundir import read_record

    try:
        read_record(run)
        return (run / "train_summary.json").is_file()
    except UserError:
        return False


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--temps", default="0.3,0.5,0.7,1.0")
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--beams", type=int, default=4)
    p.add_argument("--device", default="cuda")
    p.add_argument("--limit", type=int, default=None, help="messages per split (a smoke test)")
    p.add_argument("--max-steps", type=int, default=None, help="training steps (a smoke test)")
    p.add_argument("--reuse", action="store_true", help="use a finished /tmp/runs/recipe-seedN as it is")
    args = p.parse_args()
    from supporttune.core.memory import free_memory
    from supporttune.data.split import load_split
    from supporttune.inference.agent import load_agent
    from supporttune.inference.decode import DecodeSettings
    from supporttune.inference.generate import generate_replies
    from supporttune.train.stage import train

    args.out.mkdir(parents=True, exist_ok=True)
    temps = [float(t) for t in args.temps.split(",")]
    timing = {"device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu", "seeds": {}}
    for seed in [int(s) for s in args.seeds.split(",")]:
        run = Path("/tmp/runs") / f"recipe-seed{seed}"
        t0 = time.perf_counter()
        if args.reuse and _finished(run):  # trained by an earlier call on this warm machine (tools/gpu_parents.sh)
            summary = json.loads((run / "train_summary.json").read_text())
        else:
            summary = train(recipe(args.data, run, seed, args.device, args.max_steps))
        t_train = time.perf_counter() - t0
        agent = load_agent(run, device=args.device)
        rec = {"train_s": round(t_train, 1), "train": {k: summary.get(k) for k in ("final_val_loss", "tokens_per_s")},
               "splits": {}}
        with (args.out / f"decode_seed{seed}.jsonl").open("w") as f:
            for split in ("val", "test"):
                examples = load_split(args.data, split)[: args.limit]
                prompts = [agent.prompt_ids(ex) for ex in examples]
                t0 = time.perf_counter()
                greedy = [g.text for g in generate_replies(agent, examples, DecodeSettings(64, 256, engine="eager"),
                                                           progress=None)]
                times = {"greedy_s": round(time.perf_counter() - t0, 2)}
                beam, times["beam_s"] = sample(agent, prompts, 1, 1.0, 1.0, beams=args.beams)
                pools = {}
                for t in temps:
                    pools[str(t)], times[f"sample_T{t}_N{args.n}_s"] = sample(agent, prompts, args.n, t, args.top_p,
                                                                              batch=1024)
                if split == "test":  # the cost of N candidates, at the middle temperature
                    for n in (4, 8):
                        _, times[f"sample_T0.7_N{n}_s"] = sample(agent, prompts, n, 0.7, args.top_p, batch=1024)
                rec["splits"][split] = {"messages": len(examples), **{k: round(v, 2) for k, v in times.items()}}
                for i, ex in enumerate(examples):
                    f.write(json.dumps({"split": split, "id": ex["id"], "greedy": greedy[i], "beam": beam[i][0],
                                        "samples": {t: pools[t][i] for t in pools}}) + "\n")
        timing["seeds"][seed] = rec
        (args.out / "decode_timing.json").write_text(json.dumps(timing, indent=1))
        print(json.dumps({seed: rec}), flush=True)
        del agent
        free_memory()


if __name__ == "__main__":
    main()
