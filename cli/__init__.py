"""ω IM cli."""
