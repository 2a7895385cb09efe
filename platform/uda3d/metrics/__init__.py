"""Image-quality metrics for synthesized volumes."""
