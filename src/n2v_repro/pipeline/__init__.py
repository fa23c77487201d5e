"""What one pipeline run makes, from its validated config (workflow/rules/common.smk)."""
