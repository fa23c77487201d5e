"""Files: atomic writes, and one reader and one writer per file format the pipeline exchanges."""
