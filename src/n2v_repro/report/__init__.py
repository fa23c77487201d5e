"""Report: tables, figures and HTML pages, all read from the files the pipeline wrote."""
