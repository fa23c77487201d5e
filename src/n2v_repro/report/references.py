"""Published numbers our results are compared against: the only place they are written down.

Krull, Buchholz, Jug, "Noise2Void - Learning Denoising from Single Noisy Images", CVPR 2019,
Table 1: N2V on BSD68 (all 68 images, whole-image prediction, PSNR against the clean 8-bit
image with data range 255), Gaussian noise sigma 25.
"""

from __future__ import annotations

PAPER_CITATION = "Krull, Buchholz & Jug, Noise2Void, CVPR 2019, Table 1"
PAPER_SHORT = "Krull et al. 2019"

# (test set, sigma) -> PSNR in dB. Only the paper's protocol (all of BSD68) has a reference.
PAPER_PSNR: dict[tuple[str, int], float] = {("bsd68", 25): 27.71}


def paper_psnr(test_set: str, sigma: int) -> float | None:
    """Return the paper's N2V PSNR for this test set and sigma, or None where it has none."""
    return PAPER_PSNR.get((test_set, int(sigma)))
