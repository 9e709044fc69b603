"""THE prompt: its options (one set of defaults), the builder every stage calls, the exemplar index."""
