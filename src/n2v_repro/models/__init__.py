"""Networks: the architecture spec, the two frameworks' networks, initial weights.

Imports neither framework at package level.
"""
