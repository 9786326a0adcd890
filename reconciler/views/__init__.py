"""One module per output: the plan (human, JSON, Markdown, UI events), apply progress, the
state table and state JSON, outputs, diagnostics and the rest; and the formatting and
masking they share."""
