"""Issue 21, a follow-up on the same GPU candidates: MBR with the retrieval reply (and the constant reply) added to each pool.

Exploratory (several settings scored on val and test, means of the seeds); reads .dev/gpu/decode_seed{1,2}.jsonl from tools/gpu_decode.py.
    PYTHONPATH=src python tools/decode_hybrid.py
"""
import json, sys, statistics
sys.path.insert(0, 'tools'); sys.path.insert(0, 'src')
from pathlib import Path
from decode_results import _load, _quick, _baseline
from supporttune.data.split import load_split
from supporttune.inference.mbr import mbr_replies
data = Path('.dev/twcs')
seeds = {s: _load(Path(f'.dev/gpu/decode_seed{s}.jsonl')) for s in ('1', '2')}
for split in ('val', 'test'):
    ex = load_split(data, split)
    ret = _baseline('retrieval', data, ex)
    con = _baseline('constant', data, ex)
    print(split, 'retrieval', _quick(ex, ret))
    for t, n, u in [('0.5', 16, 'rouge_l'), ('0.7', 8, 'bleu'), ('0.7', 8, 'chrf'), ('0.5', 8, 'mix'), ('0.7', 16, 'bleu')]:
        for extra in ('none', 'ret', 'ret+con'):
            res = []
            for s, d in seeds.items():
                pools = []
                for i, r in enumerate(d[split]):
                    pool = [r['greedy']] + r['samples'][t][:n]
                    if extra != 'none': pool.append(ret[i])
                    if extra == 'ret+con': pool.append(con[i])
                    pools.append(pool)
                res.append(_quick(ex, [x for _, x in mbr_replies(pools, u)]))
            print(split, t, n, u, extra, {k: round(statistics.mean(r[k] for r in res), 2) for k in res[0]}, [r['rougeL'] for r in res], [r['bleu'] for r in res])
