#!/usr/bin/env python3
"""Yuma Consensus (Yuma 3 bonds and dividends) in plain f64, written from the published formulas
independently of the Rust code, for the golden tests in ../yuma_golden.rs.

    python3 reference.py > golden.json

Each scenario runs several epochs (bonds carry over) and records, per epoch, the weights fed
in and what the formulas give: consensus, incentive, dividends, validator trust, and how the
epoch's emission is split (owner, miners by incentive, validators by dividends).
"""
import json

U16 = 65535


def normalize(xs):
    total = sum(xs)
    return [x / total for x in xs] if total > 0 else [0.0 for _ in xs]


def epoch(stake, weights, bonds, kappa, alpha, beta):
    n = len(stake)
    vals = [i for i in range(n) if stake[i] > 0]
    s = normalize([stake[i] for i in vals])
    # Row-normalized weights of each validator.
    w = []
    for i in vals:
        row = [0.0] * n
        for j, x in weights[i]:
            row[j] = float(x)
        w.append(normalize(row))
    prerank = [sum(s[v] * w[v][j] for v in range(len(vals))) for j in range(n)]
    # Consensus: the largest weight supported by at least kappa of the stake.
    consensus = []
    for j in range(n):
        col = sorted(((w[v][j], s[v]) for v in range(len(vals)) if w[v][j] > 0), reverse=True)
        c, cum = 0.0, 0.0
        for x, sv in col:
            cum += sv
            if cum >= kappa:
                c = x
                break
        consensus.append(c)
    clipped = [[min(w[v][j], consensus[j]) for j in range(n)] for v in range(len(vals))]
    rank = [sum(s[v] * clipped[v][j] for v in range(len(vals))) for j in range(n)]
    trust = [min(rank[j] / prerank[j], 1.0) if prerank[j] > 0 else 0.0 for j in range(n)]
    incentive = normalize(rank)
    vtrust = [0.0] * n
    new_bonds = [[0.0] * n for _ in range(n)]
    div = [0.0] * n
    for v, i in enumerate(vals):
        vtrust[i] = sum(clipped[v])
        for j in range(n):
            bw = (1 - beta) * w[v][j] + beta * clipped[v][j]
            new_bonds[i][j] = min(alpha * bw + (1 - alpha) * bonds[i][j], 1.0)
        div[i] = s[v] * sum(new_bonds[i][j] * incentive[j] for j in range(n))
    dividends = normalize(div)
    return dict(consensus=consensus, rank=rank, trust=trust, incentive=incentive,
                validator_trust=vtrust, dividends=dividends), new_bonds


def split(emission, owner_ppm, incentive, dividends):
    owner = emission * owner_ppm / 1e6
    rest = emission - owner
    miners_pool, validators_pool = rest / 2, rest / 2
    recycled = 0.0
    if sum(incentive) == 0:
        recycled += miners_pool
        miners = [0.0] * len(incentive)
    else:
        miners = [miners_pool * x for x in incentive]
    if sum(dividends) == 0:
        recycled += validators_pool
        validators = [0.0] * len(dividends)
    else:
        validators = [validators_pool * x for x in dividends]
    return dict(owner=owner, miners=miners, validators=validators, recycled=recycled)


def run(name, stake, epochs, kappa=32767, bma_ppm=900_000, beta=U16, owner_ppm=180_000,
        emission=8_640_000_000_000):
    n = len(stake)
    bonds = [[0.0] * n for _ in range(n)]
    out = []
    for weights in epochs:
        res, bonds = epoch(stake, weights, bonds, kappa / U16, 1 - bma_ppm / 1e6, beta / U16)
        res["split"] = split(emission, owner_ppm, res["incentive"], res["dividends"])
        out.append(dict(weights=weights, expected=res))
    return dict(name=name, stake=[str(x) for x in stake], kappa=kappa, bma_ppm=bma_ppm,
                bond_penalty=beta, owner_ppm=owner_ppm, emission=str(emission), epochs=out)


def lcg(seed):
    x = seed
    while True:
        x = (x * 6364136223846793005 + 1442695040888963407) % 2**64
        yield x >> 33


AGR = 10**9
scenarios = []

# 1. Three validators who broadly agree on four miners.
rows = [[(3, 500), (4, 300), (5, 150), (6, 50)],
        [(3, 480), (4, 320), (5, 140), (6, 60)],
        [(3, 520), (4, 280), (5, 160), (6, 40)]]
scenarios.append(run("agreeing", [50_000 * AGR, 30_000 * AGR, 20_000 * AGR, 0, 0, 0, 0],
                     [rows + [[]] * 4] * 3))

# 2. Validators 0 and 1 (70 % of the stake) rate miners 3-5; validator 2 (30 %) puts all its
# weight on its own miner 6. The colluder's miner must get nothing.
honest = [(3, 600), (4, 300), (5, 100)]
scenarios.append(run("colluding_minority",
                     [40_000 * AGR, 30_000 * AGR, 30_000 * AGR, 0, 0, 0, 0],
                     [[honest, honest, [(6, 65535)], [], [], [], []]] * 4))

# 3. Miners' quality rotates every epoch. Validators 0 and 1 rate the current quality; the
# weight copier (2) can only copy what was revealed, i.e. the previous epoch's weights.
qualities = [[(3, 700), (4, 200), (5, 100)], [(3, 100), (4, 700), (5, 200)],
             [(3, 200), (4, 100), (5, 700)]]
epochs = []
for e in range(9):
    now, before = qualities[e % 3], qualities[(e - 1) % 3]
    epochs.append([now, now, before if e > 0 else [], [], [], []])
scenarios.append(run("weight_copier", [40_000 * AGR, 40_000 * AGR, 20_000 * AGR, 0, 0, 0],
                     epochs))

# 4. Validator 2 sets weights twice, then never reveals again: its bonds decay and its
# dividends with them.
rows = [[(3, 5), (4, 3), (5, 2)]] * 3
epochs = [rows + [[], [], []]] * 2 + [rows[:2] + [[], [], [], []]] * 5
scenarios.append(run("silent_validator", [30_000 * AGR, 30_000 * AGR, 40_000 * AGR, 0, 0, 0],
                     epochs))

# 5. Other parameters: kappa 0.6, bond penalty 0.5, alpha 0.3; a validator that weights
# itself, one whose row is empty, a miner nobody rates, one UID with stake but no row.
rows = [[(0, 100), (4, 400), (5, 300), (6, 200)],
        [(4, 100), (5, 600), (6, 300)],
        [(4, 500), (5, 100), (7, 400)],
        []]
scenarios.append(run("other_parameters",
                     [10_000 * AGR, 25_000 * AGR, 45_000 * AGR, 20_000 * AGR, 0, 0, 0, 0, 0],
                     [rows + [[]] * 5] * 4,
                     kappa=39321, bma_ppm=700_000, beta=32768, owner_ppm=150_000))

# 6. Sixteen validators, 64 UIDs, pseudo-random sparse weights, five epochs.
rng = lcg(7)
n, v = 64, 16
stake = [(next(rng) % 100_000 + 1) * AGR for _ in range(v)] + [0] * (n - v)
epochs = []
for _ in range(5):
    rows = []
    for i in range(v):
        row = sorted({next(rng) % n: next(rng) % 65535 + 1 for _ in range(20)}.items())
        rows.append(row)
    epochs.append(rows + [[] for _ in range(n - v)])
scenarios.append(run("random_16x64", stake, epochs))

print(json.dumps(dict(scenarios=scenarios), separators=(",", ":")))
