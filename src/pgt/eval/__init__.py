"""Evaluation: the reference protocol, log-likelihood scoring, perplexity and bits per byte, lm-evaluation-harness,
and the run report (`pgt eval`, `pgt report`; docs/evaluation.md). It exports no names: import its modules."""
