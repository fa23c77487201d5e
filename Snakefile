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
    # Every output by the rule that writes it: the tables and figures of every recipe, the
    # methods table beside BM3D, parity, the port's claims, the packages and the references.
    input:
        rules.summary_tables.output,
        rules.plot_final_psnr.output,
        expand(rules.recipe_tables.output, recipe=RECIPES),
        expand(rules.plot_training.output, recipe=RECIPES),
        expand(rules.plot_qualitative.output, recipe=RECIPES, sigma=SIGMAS),
        rules.methods_table.output,
        expand(rules.plot_methods.output, sigma=SIGMAS),
        # passed.txt is the gate's output: a parity failure fails `all`, not the report.
        [rules.parity_gate.output, rules.plot_parity.output, rules.port_claims.output]
        if HAS_PARITY
        else [],
        rules.bmz_table.output if CONFIG.bmz.export else [],
        expand(
            rules.reference_settings.output,
            recipe=CONFIG.reference_recipes,
            reference=CONFIG.references,
        ),
        expand(rules.plot_reference_curves.output, recipe=CONFIG.reference_recipes),
