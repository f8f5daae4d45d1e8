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
