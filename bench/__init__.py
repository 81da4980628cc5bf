"""The benchmark of issue 8: ``python -m bench`` (``make bench``) times the real sync path."""
