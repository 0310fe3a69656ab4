"""ω IM router."""
