"""Device-fault detection on real labelled data: SKAB, scored the way its leaderboard is.

SKAB (Skoltech Anomaly Benchmark, ../shared/data/skab, README.md there) is a pump test rig with
34 labelled runs at about 1 Hz, one provoked fault each. The leaderboard's protocol, followed
exactly: every file is its own series; its first 400 rows are for fitting (our detector's
warm-up: it learns them, nothing there is scored), the rest are scored.

* Outlier problem: a 0/1 per test row against ``anomaly``; TP, FP, FN, TN summed over the
  files; F1 = TP / (TP + (FP + FN) / 2), FAR and MAR in %.
* Changepoint problem: the changepoints a detector reports are where its 0/1 flags change
  (upstream's notebooks: ``abs(prediction.diff())``, the first row's flag as is); NAB scores
  with 60 s windows to the right of each true changepoint (upstream ``core/metrics.py``,
  ``chp_score(..., window_width="60s", anomaly_window_destination="righter")``).

Forewarn's 0/1 per row is "this device has an open alert episode": from the alert that opens
an episode to the reading that closes it, i.e. the time a visit would be open. The detector
runs with its defaults, one configuration for every file; the only thing the benchmark says is
the protocol's warm-up (400 readings).

Baselines in the same run, fitted on the same 400 rows of each file: a per-channel z-score
threshold (|z| > 3 on any channel), and Hotelling's T-squared with and without the PCA
residual (Q), as upstream's ``core/t2.py`` does them (p = 0.999, median of 5), which also
checks this scorer against the published rows.

    python -m bench --only detection
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import SHARED, Result, reference_data

SKAB = SHARED / "data" / "skab"
TRAIN_ROWS = 400
NAB_WINDOW = pd.Timedelta("60s")
#: NAB profiles: (A_tp, A_fp, A_fn), upstream's table_of_coef.
PROFILES = {
    "standard": (1.0, -0.11, -1.0),
    "low_fp": (1.0, -0.22, -1.0),
    "low_fn": (1.0, -0.11, -2.0),
}
CHANNELS = (
    "Accelerometer1RMS",
    "Accelerometer2RMS",
    "Current",
    "Pressure",
    "Temperature",
    "Thermocouple",
    "Voltage",
    "Volume Flow RateRMS",
)

#: The published leaderboard (SKAB README at upstream commit b2c0d46), copied.
PUBLISHED_OUTLIERS = {
    "Conv-AE": (0.78, 13.55, 28.02),
    "MSET": (0.78, 39.73, 14.13),
    "T-squared+Q (PCA-based)": (0.76, 26.62, 24.92),
    "LSTM-AE": (0.74, 29.96, 25.92),
    "T-squared": (0.66, 19.21, 42.6),
    "LSTM-VAE": (0.56, 9.13, 55.03),
    "Vanilla LSTM": (0.54, 12.54, 59.53),
    "MSCRED": (0.36, 49.94, 69.88),
    "Vanilla AE": (0.39, 2.59, 75.15),
    "Isolation forest": (0.29, 2.56, 82.89),
    "Null detector": (0.0, 0.0, 100.0),
}
PUBLISHED_NAB = {
    "MSCRED": (32.42, 16.53, 40.28),
    "Isolation forest": (26.16, 19.5, 30.82),
    "T-squared+Q (PCA-based)": (25.35, 14.51, 31.33),
    "Conv-AE": (23.61, 21.54, 27.55),
    "LSTM-AE": (23.51, 20.11, 25.91),
    "T-squared": (19.54, 10.2, 24.31),
    "MSET": (13.84, 10.22, 17.37),
    "Vanilla AE": (11.41, 6.53, 13.91),
    "Vanilla LSTM": (11.31, -3.8, 17.25),
    "ArimaFD": (-0.09, -0.17, -0.06),
    "Null detector": (0.0, 0.0, 0.0),
}
GOAL_F1, GOAL_NAB = 0.78, 32.42


def load(root: Path = SKAB) -> list[tuple[str, pd.DataFrame]]:
    """The 34 labelled files, each as its own frame indexed by time (anomaly-free excluded)."""
    files = sorted(
        (p for d in ("valve1", "valve2", "other") for p in (root / d).glob("*.csv")),
        key=lambda p: (p.parent.name, int(p.stem)),
    )
    return [
        (
            f"{p.parent.name}/{p.stem}",
            pd.read_csv(p, sep=";", index_col="datetime", parse_dates=True),
        )
        for p in files
    ]


# --- scoring, as upstream's core/metrics.py -------------------------------------------------


def outlier_scores(truths: list[pd.Series], preds: list[pd.Series]) -> dict[str, float]:
    """F1, FAR % and MAR % over the test rows of every file (confusion counts summed)."""
    tp = fp = fn = tn = 0
    for truth, pred in zip(truths, preds, strict=True):
        t, p = truth.to_numpy() == 1, pred.to_numpy() == 1
        tp += int((t & p).sum())
        fp += int((~t & p).sum())
        fn += int((t & ~p).sum())
        tn += int((~t & ~p).sum())
    return {
        "f1": round(tp / (tp + (fp + fn) / 2), 2),
        "far": round(fp / (fp + tn) * 100, 2),
        "mar": round(fn / (fn + tp) * 100, 2),
    }


def changepoints(pred: pd.Series) -> pd.Series:
    """Where a 0/1 prediction changes (upstream: ``abs(prediction.diff())``, first row as is)."""
    cp = pred.diff().abs()
    cp.iloc[0] = pred.iloc[0]
    return cp.fillna(0)


def _windows(cps: pd.DatetimeIndex) -> list[list[pd.Timestamp]]:
    windows = [[t, t + NAB_WINDOW] for t in cps]
    for i in range(len(windows) - 1):  # overlapping windows: the later one is cut
        windows[i + 1][0] = max(windows[i][1], windows[i + 1][0])
    return windows


def _nab_curve(position: float, a_tp: float, a_fp: float) -> float:
    """Upstream's 'improved' scaled sigmoid: A_tp at the window's start, A_fp at its end."""
    x = np.linspace(-np.pi / 2, np.pi / 2, 1000)
    y = (a_tp - a_fp) / 2 * -np.tanh(x) / np.tanh(np.pi / 2) + (a_tp - a_fp) / 2 + a_fp
    return float(y[min(int(position * 1000), 999)])


def nab_scores(true_cps: list[pd.Series], pred_cps: list[pd.Series]) -> dict[str, float]:
    """NAB standard / low-FP / low-FN (100 perfect, 0 null), missed changepoints and FPs."""
    totals = {name: [0.0, 0.0, 0.0] for name in PROFILES}  # score, null, perfect
    missed = false_positives = 0
    for truth, pred in zip(true_cps, pred_cps, strict=True):
        windows = _windows(truth[truth == 1].index)
        times = pred[pred == 1].index
        inside = np.zeros(len(times), bool)
        detections = []
        for lo, hi in windows:
            hit = (times >= lo) & (times <= hi)
            inside |= hit
            detections.append(times[hit][0] if hit.any() else None)
        fps = int((~inside).sum())
        misses = sum(d is None for d in detections)
        missed += misses
        false_positives += fps
        for name, (a_tp, a_fp, a_fn) in PROFILES.items():
            score = a_fp * fps + a_fn * misses
            for (lo, hi), d in zip(windows, detections, strict=True):
                if d is not None:
                    score += _nab_curve((d - lo) / (hi - lo), a_tp, a_fp)
            totals[name][0] += score
            totals[name][1] += len(windows) * a_fn
            totals[name][2] += len(windows) * a_tp
    out = {
        name: round(100 * (s - null) / (perfect - null), 2)
        for name, (s, null, perfect) in totals.items()
    }
    return out | {"missed_cps": missed, "fps": false_positives}


# --- detectors ------------------------------------------------------------------------------


def forewarn_flags(frame: pd.DataFrame, name: str, detector=None) -> np.ndarray:
    """Forewarn's device detector over one file's rows: 1 while an alert episode is open."""
    from forewarn.events import DeviceTelemetry
    from streams.device_faults.detector import DeviceFaultDetector, DeviceState

    detector = detector or default_detector()
    state = DeviceState()
    in_episode = getattr(detector, "in_episode", None)
    flags = np.zeros(len(frame), np.int8)
    times = frame.index.tz_localize(UTC).to_pydatetime()
    values = frame[list(CHANNELS)].to_numpy(float)
    device = name.replace("/", "-")
    for i, (t, row) in enumerate(zip(times, values, strict=True)):
        reading = DeviceTelemetry(
            event_id=f"{device}-{i}",
            event_time=t,
            device_id=device,
            customer_id="skab",
            device_type="pump_rig",
            metrics={c.replace(" ", "_"): float(v) for c, v in zip(CHANNELS, row, strict=True)},
        )
        detector.update(state, reading)
        if in_episode is not None:
            flags[i] = in_episode(state)
        else:  # the detector before issue 15: an episode is open from its alert on
            flags[i] = state.last_alert_at is not None
    assert isinstance(detector, DeviceFaultDetector)
    return flags


def default_detector():
    """The defaults, with the protocol's warm-up where the detector has a parameter for it."""
    from streams.device_faults.detector import DeviceFaultDetector

    fields = DeviceFaultDetector.__dataclass_fields__
    if "warmup_readings" in fields:
        return DeviceFaultDetector(warmup_readings=TRAIN_ROWS)
    return DeviceFaultDetector()


def zscore_flags(frame: pd.DataFrame, k: float = 3.0) -> np.ndarray:
    """Naive: any channel beyond k standard deviations of its own 400 training rows."""
    x = frame[list(CHANNELS)].to_numpy(float)
    mu, sd = x[:TRAIN_ROWS].mean(0), x[:TRAIN_ROWS].std(0)
    z = np.abs(x - mu) / np.where(sd > 0, sd, np.inf)
    return (z > k).any(1).astype(np.int8)


def t2_flags(frame: pd.DataFrame, pca: bool, p: float = 0.999, window: int = 5) -> np.ndarray:
    """Hotelling's T-squared (with the PCA residual Q if ``pca``) as upstream's core/t2.py:
    standardised on the training rows, PCA at 85% explained variance, F and normal UCLs at
    ``p``, a rolling median of ``window`` over the statistics."""
    from scipy import stats
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    x = frame[list(CHANNELS)].to_numpy(float)
    train = x[:TRAIN_ROWS]
    keep = (train != train[0]).any(0)
    x, train = x[:, keep], train[:, keep]
    scaler = StandardScaler().fit(train)
    xs, ts = scaler.transform(x), scaler.transform(train)
    n = len(ts)
    if pca:
        model = PCA(n_components=0.85).fit(ts)
        m = model.n_components_
        inv = np.linalg.inv(np.cov(model.transform(ts).T).reshape(m, m))
        scores = model.transform(xs)
        t2 = np.einsum("ij,jk,ik->i", scores, inv, scores)
        ev = model.components_.T
        resid = xs - xs @ ev @ ev.T
        q = (resid**2).sum(1)
        w = np.sort(np.linalg.eigvalsh(np.cov(ts.T)))[::-1]
        theta = [float((w[m:] ** i).sum()) for i in (1, 2, 3)]
        h0 = 1 - 2 * theta[0] * theta[2] / (3 * theta[1] ** 2)
        c = stats.norm.ppf(p)
        q_ucl = theta[0] * (
            1 + c * h0 * np.sqrt(2 * theta[1]) / theta[0] + theta[1] * h0 * (h0 - 1) / theta[0] ** 2
        ) ** (1 / h0)
    else:
        m = xs.shape[1]
        inv = np.linalg.inv(np.cov(ts.T))
        t2 = np.einsum("ij,jk,ik->i", xs, inv, xs)
        q, q_ucl = np.zeros(len(xs)), np.inf
    t2_ucl = m * (n - 1) * (n + 1) / (n * (n - m)) * stats.f.ppf(p, m, n - m)
    t2 = pd.Series(t2).rolling(window).median().to_numpy()
    q = pd.Series(q).rolling(window).median().to_numpy()
    return ((t2 > t2_ucl) | (q > q_ucl)).astype(np.int8)


@dataclass
class Scored:
    name: str
    outliers: dict[str, float]
    nab: dict[str, float]
    seconds: float


def evaluate(
    files: list[tuple[str, pd.DataFrame]],
    name: str,
    flags: Callable[[str, pd.DataFrame], np.ndarray],
) -> Scored:
    """Run ``flags`` over every file; score its test rows (after the first 400)."""
    truths, preds, true_cps, pred_cps = [], [], [], []
    start = time.perf_counter()
    for file, frame in files:
        pred = pd.Series(flags(file, frame), index=frame.index).iloc[TRAIN_ROWS:]
        truths.append(frame["anomaly"].iloc[TRAIN_ROWS:])
        preds.append(pred)
        true_cps.append(frame["changepoint"].iloc[TRAIN_ROWS:])
        pred_cps.append(changepoints(pred))
    seconds = time.perf_counter() - start
    return Scored(name, outlier_scores(truths, preds), nab_scores(true_cps, pred_cps), seconds)


def report(rows: list[Scored]) -> str:
    lines = [
        "Outlier problem (test rows of 34 files; F1 higher, FAR/MAR % lower is better)",
        "| detector | F1 | FAR, % | MAR, % |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| **{r.name}** (this run) | {r.outliers['f1']} | {r.outliers['far']} | "
        f"{r.outliers['mar']} |"
        for r in rows
    ]
    lines += [
        f"| {k} (published) | {f} | {a} | {m} |" for k, (f, a, m) in PUBLISHED_OUTLIERS.items()
    ]
    lines += [
        "",
        "Changepoint problem (NAB, 60 s windows; higher is better)",
        "| detector | standard | LowFP | LowFN | missed CPs (of 127) | FPs |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| **{r.name}** (this run) | {r.nab['standard']} | {r.nab['low_fp']} | "
        f"{r.nab['low_fn']} | {r.nab['missed_cps']} | {r.nab['fps']} |"
        for r in rows
    ]
    lines += [
        f"| {k} (published) | {s} | {lfp} | {lfn} | | |"
        for k, (s, lfp, lfn) in PUBLISHED_NAB.items()
    ]
    return "\n".join(lines)


def run(quick: bool = False) -> list[Result]:
    files = load(reference_data("skab"))
    if quick:
        files = files[::6]
    rows = [
        evaluate(files, "Forewarn", lambda name, frame: forewarn_flags(frame, name)),
        evaluate(files, "z-score |z|>3 (naive)", lambda name, frame: zscore_flags(frame)),
        evaluate(files, "T-squared", lambda name, frame: t2_flags(frame, pca=False)),
        evaluate(files, "T-squared+Q (PCA)", lambda name, frame: t2_flags(frame, pca=True)),
    ]
    print(report(rows), flush=True)
    ours, naive = rows[0], rows[1]
    return [
        Result(
            name="skab_outliers",
            figures=ours.outliers,
            units={"f1": "", "far": "%", "mar": "%"},
            baseline_name=naive.name,
            baseline=naive.outliers,
            ratio=round(ours.outliers["f1"] / max(naive.outliers["f1"], 1e-9), 2),
            ratio_of="f1",
            goal=f"F1 >= {GOAL_F1} (best published), one configuration for all files",
            goal_met=ours.outliers["f1"] >= GOAL_F1,
            notes={r.name: r.outliers for r in rows[2:]} | {"quick": quick},
        ),
        Result(
            name="skab_changepoints",
            figures={k: v for k, v in ours.nab.items()},
            units={
                "standard": "NAB",
                "low_fp": "NAB",
                "low_fn": "NAB",
                "missed_cps": "of 127",
                "fps": "changepoints",
            },
            baseline_name=naive.name,
            baseline={k: v for k, v in naive.nab.items()},
            ratio=round(ours.nab["standard"] / naive.nab["standard"], 2)
            if naive.nab["standard"]
            else 0.0,
            ratio_of="standard",
            goal=f"NAB standard >= {GOAL_NAB} (best published)",
            goal_met=ours.nab["standard"] >= GOAL_NAB,
            notes={r.name: r.nab for r in rows[2:]}
            | {"seconds": {r.name: round(r.seconds, 1) for r in rows}},
        ),
    ]


if __name__ == "__main__":
    run()
