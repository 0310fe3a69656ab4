"""ω IM keyd."""
