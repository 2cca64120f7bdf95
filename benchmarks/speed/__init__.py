"""Speed and cost benchmarks: programs that print figures side by side (not benchmark definitions)."""
