"""
The acceptance suite: the seed's lab end to end, with real clients on a
neighbour host (see lab.py).
"""
