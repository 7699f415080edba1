"""A simulated SaaS company: builders of canonical events and a deterministic event stream.

Used by ``revledger demo``, the benchmarks and the tests: the same seed gives the same
stream, byte for byte.
"""
