"""``forewarn churn fit --table``: a user's labelled table, read strictly, cross-validated
beside the baselines on the same folds (issue 16, item 2)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from console.cli import main
from models.churn_table import evaluate_table
from models.tables import LabelledTable, TableError, TableMapping, read_table
from tests.conftest import shared_dir

BANK = shared_dir() / "data" / "bank_churn" / "Churn_Modelling.csv"


def synthetic(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """A telecom-like table: churn rises with a monthly contract and short tenure."""
    rng = np.random.default_rng(seed)
    contract = rng.choice(["monthly", "yearly", "two-year"], n, p=[0.5, 0.3, 0.2])
    tenure = rng.integers(0, 72, n)
    charge = rng.uniform(20, 120, n).round(2)
    logit = -1.5 + 1.8 * (contract == "monthly") - 0.04 * tenure + 0.01 * charge
    churned = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame(
        {
            "customer": [f"C{i:05d}" for i in range(n)],
            "contract": contract,
            "tenure": tenure,
            "monthly_charge": charge,
            "churned": churned,
        }
    )


def write(tmp_path, frame: pd.DataFrame, name: str = "customers.csv", **kwargs) -> str:
    path = tmp_path / name
    frame.to_csv(path, index=False, **kwargs)
    return path


def fit(*args: str):
    return CliRunner().invoke(main, ["churn", "fit", *args])


def test_synthetic_table_is_learned_at_least_as_well_as_the_baselines(tmp_path):
    table = read_table(write(tmp_path, synthetic()), id_column="customer", label_column="churned")
    assert table.categorical == ["contract"] and table.numeric == ["tenure", "monthly_charge"]
    report = evaluate_table(table, n_splits=5, n_repeats=1)
    learner = report.summary["learner"]["roc_auc"]
    assert learner["low"] < learner["mean"] < learner["high"]
    best = max(report.summary[m]["roc_auc"]["mean"] for m in ("logistic", "boosting_default"))
    # A linear truth: the stack matches the logistic regression within noise.
    assert learner["mean"] > best - 0.01
    assert report.summary["dummy"]["roc_auc"]["mean"] == 0.5


def test_command_writes_card_report_and_model(tmp_path):
    path = write(tmp_path, synthetic(400))
    out = tmp_path / "out"
    args = ["--table", str(path), "--id", "customer", "--label", "churned"]
    result = fit(*args, "--repeats", "1", "--out", str(out), "--quiet")
    assert result.exit_code == 0, result.output
    assert "logistic regression" in result.output and "learner - default boosting" in result.output
    report = json.loads((out / "report.json").read_text())
    assert report["table"]["rows"] == 400 and report["protocol"]["repeats"] == 1
    card = (out / "card.md").read_text()
    for section in ("Intended use", "Out of scope", "Metrics by group", "Calibration", "Caveats"):
        assert f"## {section}" in card
    assert "contract = monthly" in card
    assert (out / "card.png").exists() and (out / "model.skops").exists()


def test_categories_a_training_fold_never_saw_are_counted():
    frame = synthetic(300)
    frame.loc[:2, "contract"] = ["weekly", "daily", "hourly"]  # each seen once only
    table = LabelledTable(
        None,
        frame["customer"],
        frame[["contract", "tenure"]].astype({"tenure": float}),
        frame["churned"].to_numpy(),
        ["tenure"],
        ["contract"],
        [],
        [],
    )
    report = evaluate_table(table, n_splits=3, n_repeats=1)
    assert report.unseen == {"contract": 3}


def test_a_model_scores_categories_it_never_saw(tmp_path):
    from models.churn_table import fit_final

    table = read_table(
        write(tmp_path, synthetic(300)), id_column="customer", label_column="churned"
    )
    model = fit_final(table)
    new = table.X.head(3).copy()
    new["contract"] = ["weekly", None, "monthly"]
    new.loc[new.index[0], "tenure"] = np.nan
    p = model.predict_proba(new)[:, 1]
    assert np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "id,plan,churned\n1,a,0\n2,b,2\n3,a,1\n",
            r"line 3, column 'churned': the label must be 0 or 1, found '2'",
        ),
        ("id,plan,churned\n1,a,0\n2,b,\n3,a,1\n", r"line 3, column 'churned'.*found an empty cell"),
        (
            "id,plan,churned\n1,a,0\n1,b,1\n",
            r"lines 2, 3, column 'id': id '1' appears more than once",
        ),
        ("1,a,0\n2,b,1\n", r"line 1: no id column 'id'.*looks like data"),
        ("id,plan,churn\n1,a,0\n2,b,1\n", r"no label column 'churned'.*did you mean 'churn'"),
        ("id,plan,churned\n1,a,0\n2,b,1,x\n", r"line 3: 4 fields, the header has 3"),
        ("id plan churned\n1 a 0\n", r"line 1: the header is a single column"),
        (
            "id,since,churned\n1,2024-01-05,0\n2,05/01/2024,1\n3,2024-02-01,0\n",
            r"line 3, column 'since': dates in mixed formats",
        ),
        ("id,plan,churned\n1,a,0\n2,b,0\n", r"every row has label 0"),
    ],
)
def test_bad_tables_are_refused_with_line_and_column(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(TableError, match=message):
        read_table(path, id_column="id", label_column="churned")
    result = fit("--table", str(path), "--id", "id", "--label", "churned", "--quiet")
    assert result.exit_code == 2
    assert "Traceback" not in result.output and str(path) in result.output


def test_a_semicolon_table_with_padded_header_is_read_and_said(tmp_path):
    frame = synthetic(50)
    frame.columns = [f" {c}" for c in frame.columns]
    path = write(tmp_path, frame, sep=";")
    table = read_table(path, id_column="customer", label_column="churned")
    assert table.numeric == ["tenure", "monthly_charge"]
    assert any("separator ';'" in note for note in table.notes)


def test_mapping_declares_types_and_dates(tmp_path):
    frame = synthetic(60)
    frame["since"] = pd.Timestamp("2024-06-30") - pd.to_timedelta(frame["tenure"] * 30, unit="D")
    frame["since"] = frame["since"].dt.strftime("%d/%m/%Y")
    frame["row"] = range(1, 61)
    path = write(tmp_path, frame)
    mapping = tmp_path / "map.yaml"
    mapping.write_text(
        "id: customer\nlabel: churned\ndate_format: '%d/%m/%Y'\nas_of: 2024-06-30\n"
        "columns:\n  tenure: categorical\n  monthly_charge: ignore\n"
    )
    table = read_table(path, mapping=TableMapping.from_yaml(mapping))
    assert table.categorical == ["contract", "tenure"]
    assert table.dates == ["since"] and "monthly_charge" not in table.X
    assert (table.X["since"] == frame["tenure"].to_numpy() * 30).all()
    assert any("'row' dropped: it is the row number" in n for n in table.notes)


def test_a_mapping_naming_a_missing_column_is_refused(tmp_path):
    path = write(tmp_path, synthetic(20))
    mapping = tmp_path / "map.yaml"
    mapping.write_text("columns:\n  region: categorical\n")
    with pytest.raises(TableError, match=r"names columns \['region'\] that are not in the header"):
        read_table(
            path,
            id_column="customer",
            label_column="churned",
            mapping=TableMapping.from_yaml(mapping),
        )


def test_a_numeric_column_with_text_names_the_line(tmp_path):
    frame = synthetic(30).astype({"tenure": object})
    frame.loc[7, "tenure"] = "twelve"
    mapping = tmp_path / "map.yaml"
    mapping.write_text("columns:\n  tenure: numeric\n")
    with pytest.raises(TableError, match=r"line 9, column 'tenure': 'twelve' is not a number"):
        read_table(
            write(tmp_path, frame),
            id_column="customer",
            label_column="churned",
            mapping=TableMapping.from_yaml(mapping),
        )


@pytest.mark.skipif(not BANK.exists(), reason=f"bank churn data not found at {BANK}")
def test_bank_churn_beats_both_baselines_on_the_same_folds():
    """The README's baselines (logistic 0.766, default boosting 0.860, 5x5 CV) are reproduced
    on the same folds, and the learner is above both. One repetition here (five folds, about
    a minute); the 5 x 5 figures are in docs/churn-table.md."""
    table = read_table(BANK, id_column="CustomerId", label_column="Exited")
    assert table.categorical == ["Geography", "Gender"] and len(table.numeric) == 8
    report = evaluate_table(table, n_splits=5, n_repeats=1)
    auc = {m: report.summary[m]["roc_auc"]["mean"] for m in report.summary}
    assert auc["logistic"] == pytest.approx(0.766, abs=0.01)
    assert auc["boosting_default"] == pytest.approx(0.860, abs=0.01)
    assert auc["learner"] > auc["boosting_default"] > auc["logistic"]
