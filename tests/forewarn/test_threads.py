"""OpenMP threads wait passively in every process of ours (see forewarn/__init__.py)."""

import os
import subprocess
import sys


def test_importing_forewarn_makes_openmp_threads_wait_passively():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = "import forewarn, os; print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "PASSIVE", out.stderr


def test_an_operators_own_policy_wins():
    env = {**os.environ, "OMP_WAIT_POLICY": "ACTIVE"}
    code = "import forewarn, os; print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "ACTIVE", out.stderr
