"""Spark batch and backfill jobs (thin main() over pure DataFrame functions). Not built yet: see README, "Not done yet"."""
