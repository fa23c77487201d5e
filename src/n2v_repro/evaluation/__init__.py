"""Evaluation: whole-image prediction with per-image PSNR/SSIM, and the metrics themselves
(also used by training's validation)."""
