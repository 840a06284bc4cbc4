"""Benchmarks behind `nanotoll bench`: each module returns one flat dict of figures."""
