# Noise2Void on BSD68, reproduced in PyTorch and Jittor. This file only wires things:
# the logic is in workflow/rules/*.smk (rules), workflow/scripts (thin) and src/n2v_repro.


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/parity.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/bm3d.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/bmz.smk"
include: "workflow/rules/references.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
        # The methods table and figure (BM3D and every recipe by its method).
        methods_outputs(),
        # The reference implementations' settings tables and curves (config `references`).
        reference_outputs(),
