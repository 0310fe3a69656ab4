"""ω IM broker."""
