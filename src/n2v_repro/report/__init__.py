"""Report: CSV/HTML tables, figures, standalone HTML pages and the published reference numbers,
all read from the files the pipeline wrote."""
