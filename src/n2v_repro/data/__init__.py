"""Data stage: download, gray conversion, BSD68 split, noise, patches (numpy only)."""
