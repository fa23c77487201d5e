# The BM3D baseline (config key `baselines`): no framework, no training, one job per sigma.
# Every BSD68 image in use, noisy exactly as the networks see it, sigma known; per-image
# PSNR/SSIM, summary.json and denoised PNGs in the learned evaluations' formats
# (src/n2v_repro/evaluation/bm3d_baseline.py).


rule bm3d:
    input:
        clean=GRAY_PNGS["bsd68"],
        noisy=NOISY_NPZ.replace("{dataset}", "bsd68"),
        split=BSD68_SPLIT,
    output:
        per_image=f"{BM3D_EVAL_DIR}/per_image.csv",
        summary=f"{BM3D_EVAL_DIR}/summary.json",
        denoised=directory(f"{BM3D_EVAL_DIR}/denoised"),
    log:
        "logs/bm3d/sigma{sigma}.log",
    benchmark:
        BM3D_BENCHMARK
    conda:
        "../../envs/bm3d.yaml"
    # The bm3d package's compiled core runs on every core it finds (2 on a 2-core machine).
    threads: 2
    script:
        "../scripts/bm3d.py"
