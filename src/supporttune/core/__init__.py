"""The foundation every stage uses: errors, files, progress, memory, provenance, multi-process launch."""
