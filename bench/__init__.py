"""The benchmark: ``python -m bench`` (``make bench``) times the real sync path against a floor."""
