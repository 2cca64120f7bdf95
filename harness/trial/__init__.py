"""One trial, a pure function of its config and seeds: data, models, the train loop, fingerprints."""
