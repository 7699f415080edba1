"""Test support: builders of events and reference data, and a stream generator."""
