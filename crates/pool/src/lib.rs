//! socklab-pool (not written yet).
