"""The benchmark's cases, one module each; ``bench.run`` runs them in order.

Cases 1, 3 and 2 share one school: case 1 syncs it into new databases, and cases 3 and 2 sync
the same databases again (3 before 2: a data comparison stores no event cursor, so after it
the next run would compare data again instead of reading events). Case 5 compares its peak
memory with case 1's.
"""
