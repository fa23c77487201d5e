# bioimage.io model packages (src/n2v_repro/bmz): per training run, the test tensors (a noisy
# training image, never BSD68, and the training framework's own prediction of it), then per
# weights (bmz.weights) a package zip validated with `bioimageio test`; the export fails with
# the validator's message when validation fails. The test tensors are computed in the
# framework's environment, so a Jittor-trained package is checked against Jittor's output.


rule bmz_test_tensors_torch:
    input:
        unpack(bmz_tensor_inputs),
    output:
        BMZ_TENSORS,
    log:
        f"logs/bmz_test_tensors/{RUN}.log",
    wildcard_constraints:
        framework="torch",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    params:
        arch=lookup(dpath="{recipe}/arch", within=RECIPE_TRAIN),
        validation=lookup(dpath="{recipe}/validation/scheme", within=RECIPE_TRAIN),
        weights=BMZ_WEIGHTS,
        size=CONFIG.data.patch_size,
    script:
        "../scripts/bmz_test_tensors.py"


use rule bmz_test_tensors_torch as bmz_test_tensors_jittor with:
    wildcard_constraints:
        framework=JITTOR_FRAMEWORKS,
    conda:
        "../../envs/jittor.yaml"


rule export_bmz:
    input:
        unpack(bmz_export_inputs),
    output:
        package=BMZ_PACKAGE,
        validation=BMZ_VALIDATION,
    log:
        f"logs/export_bmz/{RUN}/{{weights}}.log",
    conda:
        "../../envs/bioimageio.yaml"
    threads: 1
    resources:
        # PyTorch, onnxruntime and the validator's copies of a small network and image.
        mem_mb=2000,
    params:
        arch=lookup(dpath="{recipe}/arch", within=RECIPE_TRAIN),
        train_set=lookup(dpath="{recipe}/train_set", within=RECIPE_TRAIN),
        validation=lookup(dpath="{recipe}/validation/scheme", within=RECIPE_TRAIN),
        authors=[dict(author) for author in CONFIG.bmz.authors],
        method=lookup(dpath="{recipe}/method", within=RECIPE_TRAIN),
    script:
        "../scripts/export_bmz.py"


rule bmz_table:
    input:
        validations=bmz_validation_files(),
    output:
        csv=report(
            f"{BMZ_TABLE}.csv",
            caption="../report/bmz_packages.rst",
            category=report_category("summary"),
            labels={"table": "bioimage.io packages", "format": "csv"},
        ),
        html=report(
            f"{BMZ_TABLE}.html",
            caption="../report/bmz_packages.rst",
            category=report_category("summary"),
            labels={"table": "bioimage.io packages", "format": "html"},
        ),
    log:
        "logs/bmz_table/bmz_table.log",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    script:
        "../scripts/bmz_table.py"
