"""Side-by-side benchmarks against Feast's own stores and `feast serve` (`make bench`)."""
