"""Report stage: results.json (data first), then Markdown and self-contained HTML with plots."""
