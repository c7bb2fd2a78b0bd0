"""Metrics: accuracy and fairness as array functions, bootstrap, reports, comparison."""
