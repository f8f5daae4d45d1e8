"""Lifetime value on the CDNOW sample: the published estimates, within 0.5%."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from console.cli import main
from models.clv import BetaGeoNBD, GammaGamma, customer_value, read_cdnow, summarize
from tests.conftest import shared_dir

CDNOW = shared_dir() / "data" / "cdnow"
PUBLISHED_BGNBD = {"r_": 0.243, "alpha_": 4.414, "a_": 0.793, "b_": 2.426}
PUBLISHED_GG = {"p_": 6.25, "q_": 3.74, "v_": 15.44}


@pytest.fixture(scope="module")
def summary_csv() -> pd.DataFrame:
    return pd.read_csv(CDNOW / "cdnow_customers_summary_with_transactions.csv")


@pytest.fixture(scope="module")
def transactions_summary():
    return summarize(read_cdnow(CDNOW / "CDNOW_sample.txt"), date(1997, 9, 30), date(1998, 6, 30))


def _close(model, published, rel=0.005):
    for name, value in published.items():
        assert getattr(model, name) == pytest.approx(value, rel=rel), name


def test_bgnbd_reproduces_the_published_fit(summary_csv):
    model = BetaGeoNBD().fit(summary_csv[["x", "t_x", "T"]].to_numpy())
    _close(model, PUBLISHED_BGNBD)
    assert model.log_likelihood_ == pytest.approx(-9582.4, abs=0.1)


def test_bgnbd_from_raw_transactions_matches_too(transactions_summary):
    assert len(transactions_summary.frame) == 2357
    _close(BetaGeoNBD().fit(transactions_summary.X), PUBLISHED_BGNBD)


def test_bgnbd_published_predictions(summary_csv):
    model = BetaGeoNBD().fit(summary_csv[["x", "t_x", "T"]].to_numpy())
    expected = model.expected_purchases([0.1429, 1, 3, 31.86, 32, 78])
    np.testing.assert_allclose(
        expected, [0.0078, 0.0532, 0.1506, 1.0405, 1.0437, 1.8576], rtol=0.01
    )
    assert model.predict(np.array([[2, 30.43, 38.86]]), 39)[0] == pytest.approx(1.226, rel=0.005)


def test_holdout_of_customers_without_repeat_purchases(transactions_summary):
    frame = transactions_summary.frame
    model = BetaGeoNBD().fit(transactions_summary.X)
    zero = frame[frame["x"] == 0]
    assert len(zero) == 1411
    assert zero["holdout_x"].mean() == pytest.approx(0.24, abs=0.01)
    assert model.predict(zero[["x", "t_x", "T"]].to_numpy(), 39).mean() == pytest.approx(
        0.23, abs=0.01
    )


def test_gamma_gamma_reproduces_the_published_fit(summary_csv):
    repeat = summary_csv[summary_csv["x"] > 0]
    assert len(repeat) == 946
    _close(GammaGamma().fit(repeat[["x", "zbar"]].to_numpy()), PUBLISHED_GG)


def test_customer_value_has_what_the_streams_need(transactions_summary):
    s = transactions_summary
    bg = BetaGeoNBD().fit(s.X)
    gg = GammaGamma().fit(s.frame.loc[s.frame["x"] > 0, ["x", "m"]].to_numpy())
    value = customer_value(bg, gg, s)
    assert list(value.columns) == [
        "p_alive",
        "expected_purchases_90d",
        "clv_90d",
        "expected_purchases_365d",
        "clv_365d",
    ]
    assert value["p_alive"].between(0, 1).all()
    assert (value["clv_365d"] >= value["clv_90d"]).all()


def test_bad_input_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="t_x <= T"):
        BetaGeoNBD().fit(np.array([[1, 5.0, 2.0]]))
    with pytest.raises(ValueError, match="x > 0 and mean spend"):
        GammaGamma().fit(np.array([[0, 10.0]]))


@pytest.mark.parametrize(
    "args",
    [
        [
            "--input",
            str(CDNOW / "cdnow_customers_summary_with_transactions.csv"),
            "--format",
            "summary",
        ],
        [
            "--input",
            str(CDNOW / "CDNOW_sample.txt"),
            "--format",
            "transactions",
            "--calibration-end",
            "1997-09-30",
        ],
    ],
)
def test_clv_fit_command_prints_parameters_as_json(args):
    result = CliRunner().invoke(main, ["clv", "fit", *args])
    assert result.exit_code == 0, result.output
    fitted = json.loads(result.output)
    assert fitted["bgnbd"]["r"] == pytest.approx(0.243, rel=0.005)
    assert fitted["bgnbd"]["log_likelihood"] == pytest.approx(-9582.4, abs=0.1)
    assert fitted["gamma_gamma"]["p"] == pytest.approx(6.25, rel=0.005)
    assert fitted["gamma_gamma"]["gamma"] == pytest.approx(15.44, rel=0.005)
    assert fitted["customers"] in (2357, 2357 - 1)


# -- real files (issue 16, item 6) -------------------------------------------------------------


def _sample_lines() -> list[str]:
    return (CDNOW / "CDNOW_sample.txt").read_text().splitlines()


def _clv(*args: str):
    return CliRunner().invoke(main, ["clv", "fit", *args])


def test_the_master_layout_gives_the_samples_fit(tmp_path):
    # The master file's layout (id yyyymmdd n_cds dollars) with the sample's rows.
    master = tmp_path / "CDNOW_master.txt"
    master.write_text("\n".join(" ".join(line.split()[1:]) for line in _sample_lines()) + "\n")
    result = _clv("--input", str(master), "--calibration-end", "1997-09-30")
    assert result.exit_code == 0, result.output
    fitted = json.loads(result.output)
    assert fitted["bgnbd"]["r"] == pytest.approx(0.243, rel=0.005)
    assert fitted["gamma_gamma"]["p"] == pytest.approx(6.25, rel=0.005)


def test_a_csv_with_named_columns_matches_the_text_file(tmp_path):
    tx = read_cdnow(CDNOW / "CDNOW_sample.txt")
    path = tmp_path / "orders.csv"
    tx.rename(columns={"customer_id": "client", "date": "day", "amount": "eur"}).to_csv(
        path, index=False, sep=";"
    )
    result = _clv(
        "--input",
        str(path),
        "--id-column",
        "client",
        "--date-column",
        "day",
        "--amount-column",
        "eur",
        "--calibration-end",
        "1997-09-30",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["bgnbd"]["log_likelihood"] == pytest.approx(-9582.4, abs=0.1)


def test_amount_policy_nets_refunds_and_keeps_zero_value_days_for_frequency():
    tx = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "a", "a", "b", "b"],
            "date": pd.to_datetime(
                [
                    "2024-01-01",
                    "2024-01-08",
                    "2024-01-08",
                    "2024-01-15",
                    "2024-01-22",
                    "2024-01-01",
                    "2024-01-05",
                ]
            ),
            # a: a purchase, a purchase refunded in part the same day, a free order, a
            # refund of an earlier order on its own day; b: a purchase and a $0 repeat.
            "amount": [10.0, 30.0, -10.0, 0.0, -5.0, 8.0, 0.0],
        }
    )
    s = summarize(tx, date(2024, 1, 31))
    a, b = s.frame.loc["a"], s.frame.loc["b"]
    assert (a["x"], a["x_spend"], a["m"]) == (2, 1, 20.0)
    assert (b["x"], b["x_spend"], b["m"]) == (1, 0, 0.0)
    assert s.counts["refund_days_left_out"] == 1 and s.counts["zero_value_days"] == 2
    assert list(s.spend.index) == ["a"]


def test_a_zero_dollar_repeat_purchase_does_not_break_the_fit(tmp_path):
    lines = _sample_lines()
    first = lines[0].split()
    # A customer whose only repeat purchase is $0.00 (as in the real master file).
    extra = [" 99999 9999 19970105 1 12.00", " 99999 9999 19970301 1 0.00"]
    path = tmp_path / "with_zero.txt"
    path.write_text("\n".join([*lines, *extra]) + "\n")
    assert len(first) == 5
    result = _clv("--input", str(path), "--calibration-end", "1997-09-30")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["gamma_gamma"]["customers"] == 946


def test_a_one_week_window_is_a_convergence_error_not_a_result():
    # A week of CDNOW: a handful of repeat buyers, whose spend parameters run off to 1e7.
    result = _clv("--input", str(CDNOW / "CDNOW_sample.txt"), "--calibration-end", "1997-01-08")
    assert result.exit_code == 2
    assert "Gamma-Gamma: the fit did not converge to a usable maximum (q = " in result.output
    assert "Traceback" not in result.output and "{" not in result.output


def test_a_single_calibration_day_is_too_little_data():
    result = _clv("--input", str(CDNOW / "CDNOW_sample.txt"), "--calibration-end", "1997-01-01")
    assert result.exit_code == 2
    assert "BG/NBD:" in result.output and "longer" in result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "customer_id,date,amount\nc1,2024-01-01,10\nc1,2024-01-09,ten\n",
            "line 3, column 'amount': 'ten' is not an amount",
        ),
        (
            "customer_id,date,amount\nc1,2024-01-01,10\nc1,09/01/2024,5\n",
            "line 3, column 'date': '09/01/2024' is not an ISO 8601 date",
        ),
        ("customer_id,day,amount\nc1,2024-01-01,10\n", "line 1: no column 'date'"),
        (
            "customer_id,date,amount\nc1,2024-01-01,10\nc2,2024-01-02\n",
            "line 3: 2 fields, the header has 3",
        ),
    ],
)
def test_bad_transaction_files_name_line_and_column(tmp_path, content, message):
    path = tmp_path / "orders.csv"
    path.write_text(content)
    result = _clv("--input", str(path))
    assert result.exit_code == 2
    assert message in result.output and str(path) in result.output
    assert "Traceback" not in result.output


def test_holdout_check_and_output_file(tmp_path):
    out = tmp_path / "values.parquet"
    result = CliRunner().invoke(
        main,
        [
            "clv",
            "fit",
            "--input",
            str(CDNOW / "CDNOW_sample.txt"),
            "--calibration-end",
            "1997-09-30",
            "--holdout-end",
            "1998-06-30",
            "--output",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    fitted = json.loads(result.stdout)
    zero = fitted["holdout_check"][0]
    # Fader, Hardie & Lee (2005): 1,411 customers without a repeat purchase made 0.24 each
    # in the holdout; BG/NBD predicts 0.23.
    assert zero["x"] == "0" and zero["customers"] == 1411
    assert zero["actual"] == pytest.approx(0.24, abs=0.01)
    assert zero["predicted"] == pytest.approx(0.23, abs=0.01)
    assert "holdout check" in result.stderr
    values = pd.read_parquet(out)
    assert len(values) == 2357
    assert {"customer_id", "p_alive", "expected_purchases_365d", "clv_365d"} <= set(values)


def test_a_mapping_file_names_the_columns(tmp_path):
    tx = read_cdnow(CDNOW / "CDNOW_sample.txt")
    path = tmp_path / "orders.csv"
    frame = tx.rename(columns={"customer_id": "client", "date": "day", "amount": "eur"})
    frame["day"] = frame["day"].dt.strftime("%d.%m.%Y")
    frame.to_csv(path, index=False)
    mapping = tmp_path / "map.yaml"
    mapping.write_text("id: client\ndate: day\namount: eur\ndate_format: '%d.%m.%Y'\n")
    result = _clv("--input", str(path), "--map", str(mapping), "--calibration-end", "1997-09-30")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["bgnbd"]["r"] == pytest.approx(0.243, rel=0.005)
    mapping.write_text("customer: client\n")
    refused = _clv("--input", str(path), "--map", str(mapping))
    assert refused.exit_code == 2 and "a transactions mapping has the keys" in refused.output


def test_a_boundary_fit_raises_unless_the_caller_accepts_it():
    from models.clv import ConvergenceError

    # Everyone buys every week and nobody stops: no dropout to estimate, a runs to 0.
    rng = np.random.default_rng(0)
    x = rng.integers(3, 9, 300).astype(float)
    X = np.column_stack([x, x, x])
    with pytest.raises(ConvergenceError, match="did not converge to a usable maximum"):
        BetaGeoNBD().fit(X)
    with pytest.warns(UserWarning, match="edge of the space"):
        model = BetaGeoNBD(on_boundary="warn").fit(X)
    assert model.boundary_ and model.p_alive(X).min() > 0.99
