"""Tools on finished runs: `runner gradcheck` (finite differences against the analytic gradient)
and `runner ensemble` (averaging the predictions of several runs)."""
