"""The `al` protocol of ../shared/BENCHMARKS.md with scikit-learn's LogisticRegression and
uncertainty sampling written out as modAL does it (top-k of the score, no diversity step).

A like-for-like check of the reference figures in ../shared/datasets/README.md; it is not part of
the test suite. Needs `pip install scikit-learn==1.5.2`.

    python3 bench/reference/sklearn_al.py ../shared/datasets/digits.csv margin 0 5

prints one JSON object with the mean test accuracy per budget over seeds FIRST..LAST-1.
"""
import json
import sys
import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

warnings.filterwarnings("ignore")
path, strategy, first, last = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
BUDGETS = [20, 50, 100, 150, 200, 300]
data = np.loadtxt(path, delimiter=",", skiprows=1)
x_all, y_all = data[:, :-1], data[:, -1].astype(int)


def scores(p):
    top = np.sort(p, axis=1)
    if strategy == "margin":
        return -(top[:, -1] - top[:, -2])
    if strategy == "least-confidence":
        return 1 - top[:, -1]
    if strategy == "entropy":
        return -(p * np.log(np.clip(p, 1e-12, 1))).sum(axis=1)
    raise SystemExit(f"unknown strategy {strategy}")


curves = []
for seed in range(first, last):
    xp, xt, yp, yt = train_test_split(
        x_all, y_all, test_size=0.28, stratify=y_all, random_state=seed
    )
    scaler = StandardScaler().fit(xp)
    xp, xt = scaler.transform(xp), scaler.transform(xt)
    rng = np.random.RandomState(seed)
    labelled = list(rng.choice(len(xp), 10, replace=False))
    curve = []
    while True:
        model = LogisticRegression().fit(xp[labelled], yp[labelled])
        if len(labelled) in BUDGETS:
            curve.append(model.score(xt, yt))
        if len(labelled) >= BUDGETS[-1]:
            break
        if strategy == "random":
            rest = np.setdiff1d(np.arange(len(xp)), labelled)
            labelled += list(rng.choice(rest, 10, replace=False))
            continue
        s = scores(model.predict_proba(xp))
        s[labelled] = -np.inf
        labelled += list(np.argsort(-s, kind="stable")[:10])
    curves.append(curve)
print(json.dumps({"strategy": strategy, "seeds": [first, last], "budgets": BUDGETS,
                  "accuracy_mean": [round(v, 4) for v in np.mean(curves, axis=0)]}))
