"""Evaluation: whole-image prediction, and the PSNR/SSIM metrics (also used in training)."""
